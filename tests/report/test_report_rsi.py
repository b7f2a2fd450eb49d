"""The report of a real backtest: the RSI model on the shipped GOOG prices, run by the real server.

Each figure is checked against something computed apart from the report: the trades against
Blankly's own order list (the same backtest run here, in this process, with blankly), the drawdown
against a running maximum of the account values, the benchmark against the shipped CSV itself.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest

from blankly_magics.report import ReportError
from blankly_magics.results import BacktestResult
from blankly_magics.workflow import fetch_backtest

from tests.fixtures_notebooks import PRICES_CSV, REPO, RSI_BACKTEST_ARGS
from tests.fixtures_report import DESCRIPTIONS, Backtested, signed
from tests.server.runs import blankly_settings, rsi_script

pytestmark = [pytest.mark.slow, pytest.mark.blankly]

DAY = 86400.0
ARTIFACT = REPO / "test-artifacts" / "report.png"


@pytest.fixture(scope="module")
def result(backtested: Backtested) -> Iterator[BacktestResult]:
    session = signed(backtested.server)
    try:
        fetched = fetch_backtest(session, backtested.backtest_ids[0])
        fetched.version_info()  # asked now, while the session is open
        yield fetched
    finally:
        session.client.close()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Blankly's own result of the same backtest, run here with blankly (no platform hook)."""
    folder = tmp_path_factory.mktemp("in-process")
    settings, backtest = blankly_settings()
    backtest["settings"]["GUI_output"] = False
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "backtest.json").write_text(json.dumps(backtest))
    shutil.copy(PRICES_CSV, folder / PRICES_CSV.name)
    script = rsi_script("result = strategy.backtest(**ARGS, GUI_output=False)\n")
    here = os.getcwd()
    os.chdir(folder)  # blankly reads its settings and the prices from the working directory
    try:
        scope: dict[str, Any] = {"ARGS": RSI_BACKTEST_ARGS}
        exec(compile(script, str(folder / "bot.py"), "exec"), scope)
    finally:
        os.chdir(here)
    return scope["result"]


def test_the_trades_are_blanklys_own_trade_list(result: BacktestResult, in_process: Any,
                                                backtested: Backtested) -> None:
    trades = result.trades
    assert isinstance(trades, pd.DataFrame)
    assert list(trades.columns[:6]) == ["time", "symbol", "side", "size", "price", "order_id"]
    blankly_list = in_process.trades["created"]
    assert len(trades) == len(blankly_list) > 4
    ours = [(t.timestamp(), s, side, size, price) for t, s, side, size, price
            in trades[["time", "symbol", "side", "size", "price"]].itertuples(index=False)]
    theirs = [(o["time"], o["symbol"], o["side"], o["size"], o["price"]) for o in blankly_list]
    assert ours == theirs
    # The order ids are the run's own (each run draws new ones): those the server stored.
    stored = backtested.server.request("GET", "/backtest/result",
                                       params={"backtestId": result.backtest_id}).json()["result"]["trades"]
    assert list(trades["order_id"]) == [t["id"] for t in stored]
    assert set(trades["side"]) == {"buy", "sell"}


def test_the_drawdown_is_the_fall_below_the_running_high(result: BacktestResult) -> None:
    times = list(result.account_values["time"])
    values = list(result.account_values["value"])
    high, expected = float("-inf"), []
    for value in values:
        high = max(high, value)
        expected.append(value / high - 1.0)
    assert list(result.drawdown.index) == times
    assert result.drawdown.tolist() == pytest.approx(expected, abs=1e-12)
    assert result.drawdown.max() == 0.0 and min(expected) < -0.05

    bottom = expected.index(min(expected))
    peak = max(range(bottom + 1), key=lambda i: (values[i], -i))  # the first time at the high before it
    back = next(i for i in range(bottom, len(values)) if values[i] >= values[peak])
    worst = result.worst_drawdown
    assert (worst.peak, worst.trough, worst.recovered) == (times[peak], times[bottom], times[back])
    days = (times[back] - times[peak]).total_seconds() / DAY
    assert result.metrics_table.at["Worst drawdown (%)", "Strategy"] == pytest.approx(min(expected) * 100)
    assert result.metrics_table.at["Worst drawdown duration (days)", "Strategy"] == pytest.approx(days) == worst.days
    assert "Worst drawdown (%)" not in result.metrics  # Blankly's metrics stay Blankly's


def test_the_benchmark_holds_the_symbol_over_the_period_from_the_same_initial_value(result: BacktestResult) -> None:
    prices = pd.read_csv(PRICES_CSV)
    # The bars the backtest ran over: from its start, up to its stop (a bar stamped at the stop
    # opens once the backtest is over).
    period = prices[(prices["time"] >= result.start_time) & (prices["time"] < result.stop_time)]
    assert len(period) == 692
    initial = result.initial_account_value
    assert initial == RSI_BACKTEST_ARGS["initial_values"]["USD"]
    last = initial * period["close"].iloc[-1] / period["close"].iloc[0]

    benchmark = result.benchmark
    assert benchmark.iloc[0] == pytest.approx(initial)
    assert benchmark.iloc[-1] == pytest.approx(last, rel=1e-9)
    assert len(benchmark) == len(period)
    assert benchmark.index[-1] == pd.Timestamp(int(period["time"].iloc[-1]), unit="s", tz="UTC")

    table = result.metrics_table
    assert list(table.columns) == ["Strategy", "Benchmark"]
    assert table.at["Return (%)", "Benchmark"] == pytest.approx((last / initial - 1) * 100)
    final = result.final_account_value
    assert table.at["Return (%)", "Strategy"] == pytest.approx((final / initial - 1) * 100)
    # Measured as Blankly measures, before Blankly rounds to two decimals.
    assert abs(table.at["Sharpe ratio", "Strategy"] - result.metrics["Sharpe Ratio"]) <= 0.0051
    assert table.notna().all().all()


def test_the_cell_shows_both_columns_the_chart_and_the_trades_folded(result: BacktestResult) -> None:
    html = result.to_html()
    assert "<th>Metric</th><th>Strategy</th><th>buy and hold GOOG-USD</th>" in html
    assert "<th>Sharpe Ratio</th>" in html and "Blankly's metrics" in html  # Blankly's own numbers stay
    assert "<img alt='equity curve' src='data:image/png;base64," in html
    count = len(result.trades)
    assert f"<details><summary>Trades: <b>{count}</b> (first 10 of {count};" in html
    folded = html[html.index("<details>"):]
    assert folded.count("<tr>") == 1 + 10  # the header and the first rows

    fig = result.figure()
    top, bottom = fig.axes
    assert [line.get_label() for line in top.get_lines()] == ["strategy", "buy and hold GOOG-USD"]
    markers = {c.get_label(): len(c.get_offsets()) for c in top.collections}
    assert markers == {"buy": int((result.trades["side"] == "buy").sum()),
                       "sell": int((result.trades["side"] == "sell").sum())}
    assert bottom.get_ylabel() == "drawdown (%)"

    text = result.to_text()
    assert "Strategy" in text and "buy and hold GOOG-USD" in text and f"Trades: {count} (first 10)" in text


def test_the_saved_report_is_one_file_that_needs_nothing_else(result: BacktestResult, tmp_path: Path) -> None:
    path = result.save(tmp_path / "report.html")
    assert path == tmp_path / "report.html" and oct(path.stat().st_mode & 0o777) == "0o644"
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", text)  # nothing fetched
    assert "<script" not in text
    assert "version 1: RSI 30/70" in text and result.version_id in text and DESCRIPTIONS[0] in text
    assert "2010-06-01 00:00 to 2013-03-01 00:00" in text and "&quot;start_date&quot;: &quot;2010-06-01&quot;" in text
    assert f"<h2>Trades: {len(result.trades)}</h2>" in text
    assert text.count("data:image/png;base64,") == 1 and "Parameters" not in text

    with_parameters = replace(result, parameters={"rsi_low": 30}, _report=None, _version=None, _fetch_version=None)
    other = with_parameters.save(tmp_path / "tuned.html").read_text(encoding="utf-8")
    assert "<h2>Parameters</h2>" in other and "rsi_low" in other

    with pytest.raises(ReportError, match=r"is a folder; give the report a file name"):
        result.save(tmp_path)
    with pytest.raises(ReportError, match=r"cannot write the report to .*nowhere.*: No such file or directory"):
        result.save(tmp_path / "nowhere" / "report.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "tuned.html"]  # nothing half-written


@pytest.mark.browser
def test_the_saved_report_opens_in_chromium_without_an_error(result: BacktestResult, tmp_path: Path) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from tests.test_panel_browser import CHROMIUM, CHROMIUM_ARGS

    path = result.save(tmp_path / "report.html")
    errors: list[str] = []
    fetched: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            chart = page.locator("img[alt='equity curve']")
            size = chart.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
            assert size == [True, 1200, 690]
            shot = tmp_path / "chart.png"
            chart.screenshot(path=str(shot))
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACT), full_page=True)
            assert page.locator("table.blankly-metrics th", has_text="Worst drawdown (%)").count() == 1
        finally:
            browser.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in fetched), fetched
    # The screenshot shows the chart: the strategy's blue, the drawdown's red, the benchmark's grey.
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50
    seen = {rgb for _, rgb in colours}
    assert any(b > 200 and r < 80 for r, g, b in seen), "no strategy line (blue) in the screenshot"
    assert any(r > 200 and g < 140 and b < 140 for r, g, b in seen), "no drawdown or sell marker (red)"
