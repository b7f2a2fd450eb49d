"""``blankly-magics compare`` and ``blankly-magics backtests --sort`` from a terminal, against a real server."""
from __future__ import annotations

import pytest

from ..fixtures_report import DESCRIPTIONS, Backtested
from .test_verbs import blankly, home, one_line_error  # noqa: F401 - home is a fixture

pytestmark = [pytest.mark.slow, pytest.mark.blankly]


def test_compare_prints_the_table_and_writes_the_file(home, backtested: Backtested, monkeypatch, tmp_path) -> None:
    server = backtested.server
    monkeypatch.setenv("BLANKLY_DEPLOY_URL", server.url)
    monkeypatch.setenv("BLANKLY_REFRESH_TOKEN", server.refresh_token("alice"))
    first, second = backtested.backtest_ids

    done = blankly("compare", first, second, "--save", str(tmp_path / "compared.html"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Saved the comparison to {tmp_path / 'compared.html'}"
    assert lines[1] == "2 backtests compared"
    assert f"v1 {DESCRIPTIONS[0]} (" in lines[2] and f"v2 {DESCRIPTIONS[1]} (" in lines[2]
    assert any(line.startswith("Worst drawdown (%)") for line in lines)
    assert (tmp_path / "compared.html").stat().st_size > 10_000

    assert one_line_error(blankly("compare", first, backtested.foreign_id)) == (
        f"backtest {backtested.foreign_id!r} not found (HTTP 404, /backtest/result)")
    assert one_line_error(blankly("compare", first, first)) == (
        "compare needs at least two backtest ids; a model's are listed by blankly-magics backtests --model MODEL")

    listed = blankly("backtests", "--model", backtested.model_id, "--sort", "return")
    assert listed.returncode == 0, listed.stderr
    assert "by return % (best first) (2)" in listed.stdout
