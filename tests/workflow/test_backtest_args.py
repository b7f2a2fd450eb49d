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


# ---------------------------------------------------------------- periods from a price file


def test_a_price_files_span_is_read_from_its_first_and_last_time(prices_csv) -> None:
    from blankly_magics.workflow.periods import csv_span

    with open(prices_csv, "rb") as handle:
        assert csv_span(handle) == ("2010-03-10", "2013-03-01")


def test_no_period_given_means_the_price_files_which_the_code_reads(rsi_notebook) -> None:
    from blankly_magics.workflow import build_model
    from blankly_magics.workflow.periods import fill_period

    bundle = build_model(rsi_notebook)
    assert bundle.manifest["backtest_args"] == {"to": "1y"}  # blankly.json's default
    args, note = fill_period(None, bundle)
    assert args == {"start_date": "2010-03-10", "end_date": "2013-03-01"}
    assert note == "No backtest period given: backtesting GOOG-USD-1d.csv's, 2010-03-10 to 2013-03-01"
    assert fill_period({"initial_values": {"USD": 10}}, bundle)[0] == {
        "initial_values": {"USD": 10}, "start_date": "2010-03-10", "end_date": "2013-03-01"}
    assert fill_period({"to": "1y"}, bundle) == ({"to": "1y"}, None)  # given: kept, even when it holds no data
    given = {"start_date": "2011-01-01", "end_date": "2012-01-01"}
    assert fill_period(given, bundle) == (given, None)


def test_the_empty_period_error_says_which_period_was_tried_and_how_to_give_one() -> None:
    from blankly_magics.hints import PANEL, TERMINAL
    from blankly_magics.workflow.periods import empty_period_error

    blankly_says = ('IndexError: No cached or downloaded data available. Try adding arguments such as to="1y" in '
                    'the backtest command.')
    assert empty_period_error(blankly_says, {"to": "1y"}) == (
        "no prices in the backtest period (the last 1y (to: 1y)): give a start and an end within your data with "
        "--start YYYY-MM-DD --end YYYY-MM-DD")
    assert empty_period_error(blankly_says, {"start_date": "2020-01-01", "end_date": "2021-01-01"}, PANEL) == (
        "no prices in the backtest period (2020-01-01 to 2021-01-01): give a start and an end within your data "
        "with the panel's Start and End fields")
    assert "--start YYYY-MM-DD" in empty_period_error(blankly_says, {}, TERMINAL)
    assert empty_period_error("ValueError: bad config", {"to": "1y"}) is None
