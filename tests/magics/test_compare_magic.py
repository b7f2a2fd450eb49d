"""``%blankly compare`` and ``%blankly backtests --sort`` in a real IPython shell against a real server."""
from __future__ import annotations

import re

import pytest

from blankly_magics.report import Comparison

from ..fixtures_report import DESCRIPTIONS, Backtested

pytestmark = [pytest.mark.slow, pytest.mark.blankly]


def test_compare_shows_the_table_and_keeps_the_comparison(cells, backtested: Backtested, monkeypatch,
                                                          tmp_path) -> None:
    server = backtested.server
    token = server.refresh_token("alice")
    cells.secrets.add(token)
    monkeypatch.setenv("ALICE_TOKEN", token)
    cells.run(f"%blankly_login --url {server.url} --token-env ALICE_TOKEN")
    first, second = backtested.backtest_ids

    out = cells.run(f"%blankly compare {first} {second} --save {tmp_path / 'compared.html'}")
    comparison = cells.last
    assert isinstance(comparison, Comparison) and len(comparison.table.columns) == 2
    assert out.startswith(f"Saved the comparison to {tmp_path / 'compared.html'}\n")
    assert "\n2 backtests compared\n" in out
    assert f"v1 {DESCRIPTIONS[0]} (" in out and f"v2 {DESCRIPTIONS[1]} (" in out and "Sharpe ratio" in out
    assert "<img alt='equity curves overlaid'" in comparison._repr_html_()
    saved = (tmp_path / "compared.html").read_text(encoding="utf-8")
    assert saved.startswith("<!DOCTYPE html>") and "data:image/png;base64," in saved

    assert cells.fails(f"%blankly compare {first} {backtested.foreign_id}") == (
        f"backtest {backtested.foreign_id!r} not found (HTTP 404, /backtest/result)")
    assert cells.fails(f"%blankly compare {first}") == (
        "compare needs at least two backtest ids; a model's are listed by %blankly backtests --model MODEL")

    out = cells.run(f"%blankly backtests --model {backtested.model_id} --sort sharpe")
    assert f"Backtests of model {backtested.model_id}, by Sharpe (best first) (2)" in out
    header = next(line for line in out.splitlines() if line.startswith("backtest"))
    assert re.search(r"return %\s+Sharpe\s+max drawdown %\s+trades$", header), header
    assert "--sort: invalid choice: 'luck'" in cells.fails(f"%blankly backtests --model {backtested.model_id} "
                                                           "--sort luck")
