"""The one reader of backtest periods and balances, for every face."""
from __future__ import annotations

import re

import pytest

from blankly_magics.workflow import BacktestArgsError, backtest_args, from_options, parse_balances

from ..fixtures_notebooks import RSI_BACKTEST_ARGS


def test_backtest_fields_become_backtest_kwargs() -> None:
    # The one parser: the panel's fields, the magics' and the CLI's options alike.
    assert backtest_args(" 2010-06-01", "2013-03-01 ", "", "USD=10000") == RSI_BACKTEST_ARGS
    assert backtest_args("", "", "1y", "usd=10000; btc=0.5") == {
        "to": "1y", "initial_values": {"USD": 10000, "BTC": 0.5}}
    assert backtest_args(to="6mo", initial=["USD=1e4", "eth=2,BTC=0"]) == {
        "to": "6mo", "initial_values": {"USD": 10000, "ETH": 2, "BTC": 0}}
    assert backtest_args("", "", "", "") == {} and backtest_args() == {}
    assert backtest_args(to="30d", extra={"to": "1y", "use_price": "open"}) == {"to": "30d", "use_price": "open"}
    assert parse_balances("") == {}


@pytest.mark.parametrize("fields,message", [
    (dict(start="2010-06-01", end="2013-03-01", to="1y"),
     "backtest period: give a start and an end date, or 'to' (a span like 1y), not both"),
    (dict(to="1y", extra={"start_date": "2010-06-01", "end_date": "2013-03-01"}), "not both"),
    (dict(start="2010-06-01"),
     "backtest period: give both a start and an end date (like 2021-01-01), or 'to' (a span like 1y)"),
    (dict(end="2013-03-01", extra={"to": None}), "give both a start and an end date"),
    (dict(start="2013-03-01", end="2010-06-01"), "backtest period: the start 2013-03-01 is not before the end 2010-06-01"),
    (dict(to="1 year"), "backtest period: 'to' takes a span like 1y, 6M or 30d, not '1 year'"),
    (dict(initial="USD10000"), "initial balance 'USD10000' is not ASSET=AMOUNT: write e.g. USD=10000"),
    (dict(initial="USD=lots"), "initial balance 'USD=lots' is not ASSET=AMOUNT"),
    (dict(initial="=5"), "initial balance '=5' is not ASSET=AMOUNT"),
    (dict(initial="US D=5"), "initial balance 'US D=5' is not ASSET=AMOUNT"),
    (dict(initial="USD=nan"), "initial balance 'USD=nan' is not ASSET=AMOUNT"),
    (dict(initial="USD=-5"), "initial balance 'USD=-5' is negative: give an amount of 0 or more"),
    (dict(initial=["USD=5", "usd=6"]), "initial balance of USD given twice: give each asset once"),
])
def test_bad_backtest_fields_say_what_to_fix(fields, message) -> None:
    with pytest.raises(BacktestArgsError, match=re.escape(message)) as caught:
        backtest_args(**fields)
    assert isinstance(caught.value, ValueError)


def test_the_options_of_the_magics_and_the_cli_read_json_under_the_shortcuts() -> None:
    assert from_options() is None  # nothing given: the model's blankly.json decides
    assert from_options('{"use_price": "open"}', start="2010-06-01", end="2013-03-01") == {
        "use_price": "open", "start_date": "2010-06-01", "end_date": "2013-03-01"}
    with pytest.raises(BacktestArgsError, match="not both"):
        from_options('{"to": "1y"}', start="2010-06-01", end="2013-03-01")
    with pytest.raises(BacktestArgsError, match=re.escape("--args must be a JSON object")):
        from_options("[1]")
    assert from_options(initial=["USD=5"]) == {"initial_values": {"USD": 5}}
