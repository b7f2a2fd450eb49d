"""Comparing backtests through the workflow, as a script does: two versions of the RSI model, their
metrics side by side and their curves overlaid; another user's backtest refused as unknown; the
backtest list with each backtest's key metrics, sorted by them."""
from __future__ import annotations

from typing import Iterator

import pytest

from blankly_magics.client import DeploymentError
from blankly_magics.report import Comparison, ReportError
from blankly_magics.results import format_time
from blankly_magics.server.records import SUMMARY_METRICS
from blankly_magics.session import Session
from blankly_magics.workflow import RunError, compare, fetch_backtest, listings

from ..fixtures_report import DESCRIPTIONS, Backtested, signed

pytestmark = [pytest.mark.slow, pytest.mark.blankly]


@pytest.fixture(scope="module")
def alice(backtested: Backtested) -> Iterator[Session]:
    session = signed(backtested.server)
    yield session
    session.client.close()


def test_two_versions_compare_as_two_labelled_columns_and_two_curves(alice: Session, backtested: Backtested) -> None:
    first, second = backtested.backtest_ids
    comparison = compare(alice, [first, second])
    assert isinstance(comparison, Comparison) and comparison.backtest_ids == [first, second]
    columns = list(comparison.table.columns)
    assert len(columns) == 2
    assert columns[0].startswith(f"v1 {DESCRIPTIONS[0]} (") and columns[1].startswith(f"v2 {DESCRIPTIONS[1]} (")
    created = fetch_backtest(alice, first).created_at
    assert columns[0] == f"v1 {DESCRIPTIONS[0]} ({format_time(created)})"  # version, description, date

    table = comparison.table
    for row in ("Return (%)", "Sharpe ratio", "Worst drawdown (%)", "Worst drawdown duration (days)",
                "Benchmark return (%)", "Trades", "Final value", "Sharpe Ratio", "Max Drawdown (%)"):
        assert table.loc[row].notna().all(), row
    assert table.loc["Return (%)"].nunique() == 2  # the two versions traded differently
    assert table.loc["Benchmark return (%)"].nunique() == 1  # the same symbol over the same period
    one = fetch_backtest(alice, first)
    assert table.at["Return (%)", columns[0]] == pytest.approx(one.metrics_table.at["Return (%)", "Strategy"])
    assert table.at["Trades", columns[0]] == len(one.trades)

    assert list(comparison.curves) == columns
    lines = comparison.figure().axes[0].get_lines()
    assert [line.get_label() for line in lines] == columns
    assert [len(line.get_xdata()) for line in lines] == [len(c) for c in comparison.curves.values()]
    html = comparison.to_html()
    assert "<img alt='equity curves overlaid' src='data:image/png;base64," in html
    assert all(f"<th>{c}</th>" in html for c in columns)
    text = comparison.to_text()
    assert text.startswith("2 backtests compared\n") and columns[1] in text


def test_another_users_backtest_is_refused_as_any_unknown_id(alice: Session, backtested: Backtested) -> None:
    with pytest.raises(DeploymentError) as alone:
        fetch_backtest(alice, backtested.foreign_id)
    with pytest.raises(DeploymentError) as compared:
        compare(alice, [backtested.backtest_ids[0], backtested.foreign_id])
    assert str(compared.value) == str(alone.value) == (
        f"backtest {backtested.foreign_id!r} not found (HTTP 404, /backtest/result)")
    with pytest.raises(DeploymentError, match="not found"):
        compare(alice, [backtested.backtest_ids[0], "0" * 32])


def test_what_cannot_be_compared_is_said_in_one_line(alice: Session, backtested: Backtested) -> None:
    first = backtested.backtest_ids[0]
    with pytest.raises(RunError, match=r"^compare needs at least two backtest ids; a model's are listed by "
                                       r"%blankly backtests --model MODEL$"):
        compare(alice, [first, f" {first} "])  # the same backtest twice is one
    with pytest.raises(RunError, match="at most 20 backtests at once; 21 were given"):
        compare(alice, [f"id{n}" for n in range(21)])
    mallory = signed(backtested.server, "mallory")
    try:
        failed = fetch_backtest(mallory, backtested.foreign_id)
        assert failed.status == "failed"
        with pytest.raises(ReportError, match=rf"^backtest {failed.backtest_id} is failed \(.*\): only completed"):
            Comparison.of([failed, failed])
    finally:
        mallory.client.close()


def test_the_backtest_list_carries_key_metrics_and_sorts_by_them(alice: Session, backtested: Backtested) -> None:
    answer = backtested.server.request("GET", "/model/backtests", params={"modelId": backtested.model_id}).json()
    assert [b["backtestId"] for b in answer] == list(reversed(backtested.backtest_ids))  # newest first
    for row in answer:
        result = backtested.server.request("GET", "/backtest/result", params={"backtestId": row["backtestId"]})
        full = result.json()["result"]
        assert row["summary"] == {
            "metrics": {name: full["metrics"][name] for name in SUMMARY_METRICS},
            "trades": len(full["trades"]),
            "initialAccountValue": full["initialAccountValue"],
            "finalAccountValue": full["finalAccountValue"],
        }
        assert "result" not in row

    listing = listings.backtests(alice, backtested.model_id, sort="return")
    returns = [row["return"] for row in listing.rows]
    assert returns == sorted(returns, reverse=True) and all(isinstance(r, float) for r in returns)
    assert listing.title == f"Backtests of model {backtested.model_id}, by return % (best first)"
    assert "return %" in listing.to_text() and "Sharpe" in listing.to_text()
    frame = listing.to_frame()
    assert list(frame.columns[-4:]) == ["return %", "Sharpe", "max drawdown %", "trades"]
    assert frame.sort_values("Sharpe")["backtest"].tolist()[0] in backtested.backtest_ids
    by_drawdown = [row["drawdown"] for row in listings.backtests(alice, backtested.model_id, sort="drawdown").rows]
    assert by_drawdown == sorted(by_drawdown)  # the smallest drawdown first
