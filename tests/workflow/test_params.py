"""Overrides and grids as the user types them, and how a sweep ranks its points (the rules the server shares)."""
from __future__ import annotations

import pytest

from blankly_magics.errors import BlanklyError
from blankly_magics.sweepspec import (MAX_POINTS, Objective, best_point, grid_points, objective, parse_constraint)
from blankly_magics.workflow.params import check_names, grid, overrides
from blankly_magics.workflow.sweeps import Sweep


def test_overrides_are_python_or_json_literals():
    assert overrides(["low=25", "ratio=0.5", "symbol='GOOG-USD'", 'name="x"', "on=true", "off=False",
                      "sizes=[1, 2]", "none=null"]) == {
        "low": 25, "ratio": 0.5, "symbol": "GOOG-USD", "name": "x", "on": True, "off": False, "sizes": [1, 2],
        "none": None}


@pytest.mark.parametrize("items, message", [
    (["low=abc"], "--param low: 'abc' is not a Python or JSON literal; quote text, e.g. --param 'symbol=\"GOOG-USD\"'"),
    (["low"], "--param 'low' is not NAME=VALUE, e.g. --param low=25"),
    (["2x=1"], "--param '2x=1' is not NAME=VALUE, e.g. --param low=25"),
    (["low=1", "low=2"], "--param low is given twice: give each parameter once"),
    (["s={1, 2}"], "--param s: '{1, 2}' cannot travel as JSON"),
])
def test_bad_overrides_say_what_to_write(items, message):
    with pytest.raises(BlanklyError) as info:
        overrides(items)
    assert str(info.value).startswith(message)


def test_grids_take_lists_and_ranges_with_the_stop_included_on_the_step():
    assert grid(["low=20,25,30", "high=65:80:5"]) == {"low": [20, 25, 30], "high": [65, 70, 75, 80]}
    assert grid(["x=0:10:4"]) == {"x": [0, 4, 8]}  # 10 is not on the step
    assert grid(["r=0.1:0.3:0.1"]) == {"r": [0.1, 0.2, 0.3]}  # counted in decimal
    assert grid(["s='A','B'", "t=[1, 2]"]) == {"s": ["A", "B"], "t": [1, 2]}
    assert grid(["one=5"]) == {"one": [5]}
    assert grid_points({"a": [1, 2], "b": [3, 4]}) == [{"a": 1, "b": 3}, {"a": 1, "b": 4}, {"a": 2, "b": 3},
                                                       {"a": 2, "b": 4}]


@pytest.mark.parametrize("items, message", [
    (["high=80:65:5"], "--sweep high: the range is empty (it starts at 80, past its stop 65); write START:STOP:STEP "
                       "with START <= STOP"),
    (["high=65:80:0"], "--sweep high: the step is 0; a range counts up by a step above 0, e.g. 65:80:5"),
    (["high=65:80:-5"], "--sweep high: the step is -5; a range counts up by a step above 0"),
    (["high="], "--sweep high: no values; give a list like 20,25,30 or a range like 65:80:5"),
    (["high=[]"], "--sweep high: no values"),
    (["low=1,1"], "--sweep low: 1 is given twice; give each value once"),
    (["low=1", "low=2"], "--sweep low is given twice: list all its values in one --sweep"),
    (["a=1:40:1", "b=1:26:1"], f"the sweep has 1,040 points (40 a x 26 b); a sweep runs at most {MAX_POINTS:,}"),
])
def test_bad_grids_are_one_line_errors(items, message):
    with pytest.raises(BlanklyError) as info:
        grid(items)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_names_are_checked_against_the_parameters_cell():
    defaults = {"low": 30, "high": 70}
    check_names(defaults, "cell 2 (`low = 30`)", {"low": 1}, "--param")
    with pytest.raises(BlanklyError, match=r"^--sweep lowx: the parameters cell, cell 2 \(`low = 30`\), does not "
                                           r"assign lowx \(it assigns low, high\)$"):
        check_names(defaults, "cell 2 (`low = 30`)", {"lowx": [1]}, "--sweep")
    with pytest.raises(BlanklyError, match="^--param low: the notebook has no parameters cell; mark the cell"):
        check_names({}, None, {"low": 1}, "--param")


def test_metrics_objectives_and_constraints_use_blanklys_display_names():
    assert Objective("sharpe ratio").metric == "Sharpe Ratio"  # case does not matter
    assert objective(minimize="Max Drawdown (%)") == Objective("Max Drawdown (%)", "minimize")
    assert objective() == Objective("Sharpe Ratio", "maximize")
    constraint = parse_constraint("  max drawdown (%)<=25.5 ")
    assert (constraint.metric, constraint.op, constraint.value, constraint.text) == (
        "Max Drawdown (%)", "<=", 25.5, "Max Drawdown (%) <= 25.5")
    with pytest.raises(BlanklyError, match="^unknown metric 'Sharpe'; Blankly's metrics are: Calmar Ratio, "):
        Objective("Sharpe")
    with pytest.raises(BlanklyError, match=r"^constraint 'Max Drawdown \(%\) below 25' does not read METRIC OP NUMBER"):
        parse_constraint("Max Drawdown (%) below 25")
    with pytest.raises(BlanklyError, match="^give --maximize or --minimize, not both"):
        objective("Sharpe Ratio", "Volatility")
    with pytest.raises(BlanklyError, match="^unknown metric 'Drawdown'"):
        Sweep.from_options(["low=1,2"], constraints=["Drawdown < 3"])


ROWS = [
    {"status": "completed", "metrics": {"Sharpe Ratio": 1.0, "Max Drawdown (%)": 10.0}},
    {"status": "completed", "metrics": {"Sharpe Ratio": 2.0, "Max Drawdown (%)": 30.0}},
    {"status": "failed", "metrics": None},
    {"status": "completed", "metrics": {"Sharpe Ratio": 1.5, "Max Drawdown (%)": 20.0}},
    {"status": "completed", "metrics": {"Sharpe Ratio": 2.0, "Max Drawdown (%)": 5.0}},
    {"status": "completed", "metrics": {"Sharpe Ratio": None, "Max Drawdown (%)": 1.0}},
]


def test_the_best_point_under_maximize_minimize_and_constraints_first_in_grid_order_on_ties():
    assert best_point(ROWS, Objective("Sharpe Ratio")) == (1, None)  # 1 and 4 tie: the first wins
    assert best_point(ROWS, Objective("Sharpe Ratio", "minimize")) == (0, None)
    assert best_point(ROWS, Objective("Max Drawdown (%)", "minimize")) == (5, None)
    under = [parse_constraint("Max Drawdown (%) < 25")]
    assert best_point(ROWS, Objective("Sharpe Ratio"), under) == (4, None)
    assert best_point(ROWS, Objective("Sharpe Ratio"), [parse_constraint("Max Drawdown (%) < 0")]) == (
        None, "no completed point meets Max Drawdown (%) < 0 (5 completed)")
    assert best_point(ROWS[2:3], Objective()) == (None, "no point has completed")
    assert best_point(ROWS[5:], Objective()) == (
        None, "no point that meets the constraints has a value for Sharpe Ratio")
