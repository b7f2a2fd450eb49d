"""Result objects: what a user sees of a backtest/deployment, in text, HTML and a chart."""
from __future__ import annotations

import math

import pytest

from blankly_magics.charts import account_values_frame
from blankly_magics.hints import TERMINAL
from blankly_magics.listing import Listing
from blankly_magics.results import BacktestResult, DeployResult, format_time, format_value, normalize_metrics

DAY = 86400.0
START = 1275350400.0  # 2010-06-01 00:00 UTC


def _payload(status: str = "completed", **extra) -> dict:
    """A /backtest/result answer as the contract describes it, with Blankly's platform metric format."""
    values = [{"time": START + i * DAY, "value": 10000.0 + 25.0 * i} for i in range(30)]
    payload = {
        "backtestId": "bt-1",
        "modelId": "m-1",
        "versionId": "v-1",
        "projectId": "p-1",
        "status": status,
        "description": "first try",
        "args": {"initial_values": {"USD": 10000}},
        "createdAt": START,
        "startedAt": START + 1,
        "endedAt": START + 5,
        "exitCode": 0,
        "error": None,
        "result": {
            "metrics": {
                "cagr": {"value": 12.5, "display_name": "Compound Annual Growth Rate (%)", "type": "number"},
                "sharpe": {"value": 0.8312, "display_name": "Sharpe Ratio", "type": "number"},
                "max_drawdown": {"value": float("nan"), "display_name": "Max Drawdown (%)", "type": "number"},
            },
            "accountValues": values,
            "trades": [{"id": "t1", "side": "buy"}, {"id": "t2", "side": "sell"}, {"id": "t3", "side": "buy"}],
            "initialAccountValue": values[0]["value"],
            "finalAccountValue": values[-1]["value"],
            "startTime": START,
            "stopTime": START + 29 * DAY,
            "symbols": ["GOOG-USD"],
            "quoteAsset": "USD",
            "exchange": "keyless",
        },
    }
    payload.update(extra)
    return payload


def test_metrics_are_keyed_by_blankly_display_names():
    result = BacktestResult.from_api(_payload())
    assert result.metrics["Compound Annual Growth Rate (%)"] == 12.5
    assert result.metrics["Sharpe Ratio"] == 0.8312
    assert math.isnan(result.metrics["Max Drawdown (%)"])
    # a server that already sends flat names keeps them
    assert normalize_metrics({"Sharpe Ratio": 1.5}) == {"Sharpe Ratio": 1.5}
    assert normalize_metrics(None) == {}


def test_account_values_become_a_dataframe_with_utc_times():
    import pandas as pd

    result = BacktestResult.from_api(_payload())
    frame = result.account_values
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["time", "value"]
    assert len(frame) == 30
    assert frame["time"].iloc[0] == pd.Timestamp("2010-06-01", tz="UTC")
    assert frame["value"].iloc[-1] == 10000.0 + 25.0 * 29
    assert account_values_frame([]).empty


def test_text_shows_status_metrics_trades_and_how_to_get_more():
    result = BacktestResult.from_api(_payload())
    text = result.to_text()
    assert text.splitlines()[0] == "Backtest bt-1 completed: account value 10,000 -> 10,725 USD"
    assert "Sharpe Ratio" in text and "0.8312" in text
    assert "Max Drawdown (%)" in text and "n/a" in text
    assert "Trades: 3" in text
    assert "Period: 2010-06-01 00:00 to 2010-06-30 00:00" in text
    assert "%blankly result bt-1" in text
    assert result.trade_count == 3 and result.done and result.ok


def test_html_escapes_and_embeds_the_chart_only_when_asked():
    result = BacktestResult.from_api(_payload(description="<script>x</script>"))
    result.metrics["<b>odd</b>"] = 1.0
    html = result.to_html(chart=False)
    assert "<table class='blankly-metrics'>" in html
    assert "&lt;b&gt;odd&lt;/b&gt;" in html and "<b>odd</b>" not in html
    assert "data:image/png;base64," not in html
    with_chart = result.to_html(chart=True)
    assert "data:image/png;base64," in with_chart
    result.show_chart = False
    assert "data:image/png" not in result._repr_html_()


def test_figure_plots_the_account_values():
    result = BacktestResult.from_api(_payload())
    fig = result.figure()
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_ydata()) == [10000.0 + 25.0 * i for i in range(30)]
    assert fig.axes[0].get_ylabel() == "value (USD)"
    png = result.chart_png()
    assert png.startswith(b"\x89PNG")


def test_failed_backtest_shows_reason_and_log_tail():
    log = "\n".join(f"line {i}" for i in range(50)) + "\nNameError: name 'strategy' is not defined\n"
    payload = _payload(status="failed", error="the script exited with code 1", result=None, exitCode=1)
    result = BacktestResult.from_api(payload, log_tail=log)
    text = result.to_text()
    assert "Backtest bt-1 failed: the script exited with code 1" in text
    assert "NameError: name 'strategy' is not defined" in text
    assert "line 10\n" not in text  # only the tail
    assert "Log tail" in result.to_html()
    assert result.metrics == {} and result.trade_count == 0 and not result.ok
    assert result.logs() == log  # without a fetcher, the tail is all there is


def test_logs_are_fetched_lazily_and_kept_out_of_the_repr():
    calls = []

    def fetch() -> str:
        calls.append(1)
        return "whole log"

    result = BacktestResult.from_api(_payload(), fetch_logs=fetch)
    assert calls == []
    assert result.logs() == "whole log" and calls == [1]
    assert repr(result) == (
        "BacktestResult(backtest_id='bt-1', status='completed', model_id='m-1', version_id='v-1', metrics=3, trades=3)"
    )


def test_unfinished_backtest_points_at_following_its_log():
    result = BacktestResult.from_api({"backtestId": "bt-9", "status": "running"})
    assert not result.done
    assert "%blankly logs --backtest bt-9 --follow" in result.to_text()


def test_deploy_result_shows_its_name_state_and_next_steps():
    result = DeployResult.from_api(
        {"status": "success", "modelId": "m-7", "versionId": "v-3"},
        {"modelId": "m-7", "state": "running", "versionId": "v-3", "since": START, "restarts": 0},
        name="rsi",
    )
    text = result.to_text()
    assert text.splitlines()[0] == "Model rsi (m-7) version v-3: running"
    assert text.splitlines()[-1] == "Watch: %blankly logs --model m-7 --follow   Stop: %blankly stop --model m-7"
    assert "2010-06-01 00:00" in text
    html = result.to_html()
    assert "running" in html and "%blankly stop --model m-7" in html
    crashed = DeployResult.from_api({"modelId": "m-7"}, {"state": "crashed", "logTail": "Traceback: boom"})
    assert "Traceback: boom" in crashed.to_text()
    assert crashed.to_text().splitlines()[-1] == "Log: %blankly logs --model m-7"  # nothing runs to stop
    stopped = DeployResult.from_api({"modelId": "m-7"}, {"state": "stopped", "exitCode": None}, name="rsi")
    assert [line.split() for line in stopped.to_text().splitlines()] == [
        ["Model", "rsi", "(m-7)", "version", "n/a:", "stopped"], ["model", "m-7"], ["name", "rsi"],
        ["version", "n/a"], ["status", "stopped"]]  # no exit code, nothing to watch or stop
    assert "%blankly" not in stopped.to_html()


def test_html_without_hints_for_the_panel_keeps_everything_else():
    # The "r = _ then r.metrics ..." and %blankly lines only make sense below a notebook cell.
    done = BacktestResult.from_api(_payload())
    running = BacktestResult.from_api(_payload(status="running", result=None))
    deployed = DeployResult.from_api({"modelId": "m-7", "versionId": "v-3"}, {"state": "running"})
    for obj, kwargs in ((done, {"chart": True}), (running, {}), (deployed, {})):
        with_hints, bare = obj.to_html(**kwargs), obj.to_html(hints=False, **kwargs)
        assert "%blankly" in with_hints and "%blankly" not in bare and "r = _" not in bare
        assert bare.count("<div") == bare.count("</div>") == 1 and bare.endswith("</div>")
        assert obj._repr_html_() == obj.to_html()  # the notebook's view keeps its hints
    assert "r = _  then r.metrics" in done.to_html()
    bare = done.to_html(chart=True, hints=False)
    assert "Sharpe Ratio" in bare and "Trades: <b>3</b>" in bare and "data:image/png;base64," in bare
    assert "m-7" in deployed.to_html(hints=False) and "running" in deployed.to_html(hints=False)


def test_listing_renders_rows_as_table():
    rows = [{"modelId": "m-1", "name": "rsi", "createdAt": START}, {"modelId": "m-2", "name": "<macd>"}]
    listing = Listing("Models", [("modelId", "id"), ("name", "name"), ("createdAt", "created")], rows)
    lines = listing.to_text().splitlines()
    assert lines[0] == "Models (2)"
    assert lines[1].split() == ["id", "name", "created"]
    assert lines[2].split() == ["m-1", "rsi", "2010-06-01", "00:00"]
    assert "&lt;macd&gt;" in listing.to_html()
    assert len(listing) == 2 and listing[1]["name"] == "<macd>"
    assert Listing("Models", [("id", "id")]).to_text() == "Models: none"


@pytest.mark.parametrize(
    "value,text",
    [(None, "n/a"), (float("nan"), "n/a"), (3, "3"), (0.123456, "0.1235"), (12345.678, "12,345.68"), ("x", "x")],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_format_time_accepts_seconds_milliseconds_and_text():
    assert format_time(START) == "2010-06-01 00:00"
    assert format_time(START * 1000) == "2010-06-01 00:00"
    assert format_time("2024-01-01T00:00:00Z") == "2024-01-01 00:00"  # ISO text from another server, read
    assert format_time("not a time") == "not a time"
    assert format_time(None) == ""


def test_hints_are_spelled_as_the_face_spells_its_commands():
    notebook = BacktestResult.from_api(_payload())
    terminal = BacktestResult.from_api(_payload(), commands=TERMINAL)
    assert "%blankly result bt-1" in notebook.to_text() and "r = _" in notebook.to_text()
    assert "blankly-magics result bt-1" in terminal.to_text() and "r = _" not in terminal.to_text()
    deployed = DeployResult.from_api({"modelId": "m-1"}, {"state": "running"}, commands=TERMINAL)
    assert "blankly-magics logs --model m-1 --follow" in deployed.to_text()
    assert "blankly-magics stop --model m-1" in deployed.to_text()


def test_ipython_shows_the_text_form_and_the_html_form():
    from IPython.core.formatters import DisplayFormatter

    shown = [
        BacktestResult.from_api(_payload()),
        DeployResult.from_api({"modelId": "m-1", "versionId": "v-1"}, {"state": "running"}),
        Listing("Projects", [("id", "id")], [{"id": "p-1"}]),
    ]
    formatter = DisplayFormatter()
    for obj in shown:
        data, _ = formatter.format(obj)
        assert data["text/plain"] == obj.to_text()
        assert data["text/html"] == obj.to_html()
