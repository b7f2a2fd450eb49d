"""JSON columns: what the store writes is strict JSON, whatever a run's result held."""
from __future__ import annotations

import numpy as np

from blankly_magics.server.rows import dumps, loads


def test_a_result_with_nan_infinities_and_numpy_scalars_is_stored_as_strict_json() -> None:
    value = {"a": [1.5, float("nan"), float("-inf")], "b": np.float64(2.5), "c": np.int64(3), "d": (1, 2)}
    assert loads(dumps(value)) == {"a": [1.5, None, None], "b": 2.5, "c": 3, "d": [1, 2]}


def test_a_strict_result_is_stored_as_it_is_compactly() -> None:
    value = {"metrics": {"Sharpe Ratio": 1.25}, "account_values": [{"time": 1.0, "value": 2.0}]}
    assert dumps(value) == '{"metrics":{"Sharpe Ratio":1.25},"account_values":[{"time":1.0,"value":2.0}]}'
