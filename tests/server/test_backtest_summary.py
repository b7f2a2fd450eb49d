"""A model's backtest list carries each completed backtest's key metrics, read out of the stored result."""
from __future__ import annotations

from pathlib import Path

from blankly_magics.server.records import SUMMARY_METRICS
from blankly_magics.server.store import Store


def test_completed_backtests_are_listed_with_a_summary_and_without_their_result(tmp_path: Path) -> None:
    with Store(tmp_path / "data") as store:
        user = store.ensure_user("alice")
        model = store.create_model(user.id, "rsi", "strategy", "", "alice")
        store.add_version(model.id, version_id="v1", description="", python_version="3.11", sha256="0" * 64,
                          size=1, uploaded_by="alice", zip_name="v1.zip", model_type="strategy", schedule=None,
                          manifest={})
        done, failed, queued = (store.add_backtest(model_id=model.id, version_id="v1", project_id=user.id, args={},
                                                   description=d, plan="nano") for d in ("done", "failed", "queued"))
        metrics = {name: float(n) for n, name in enumerate(SUMMARY_METRICS)}
        metrics.update({"Sharpe Ratio": None, "Variance (%)": 1.5})
        result = {"metrics": metrics, "trades": [{"id": "t1"}, {"id": "t2"}], "account_values": [{"time": 1}] * 500,
                  "initial_account_value": 10000, "final_account_value": 12345.5, "prices": {"series": {}}}
        store.update_backtest(done.id, {"status": "completed", "result": result})
        store.update_backtest(failed.id, {"status": "failed", "error": "boom"})

        listed = {b.description: b for b in store.list_backtests(model.id)}
        assert [b.description for b in store.list_backtests(model.id)] == ["queued", "failed", "done"]
        summary = listed["done"].summary
        assert summary == {"metrics": {name: metrics[name] for name in SUMMARY_METRICS}, "trades": 2,
                           "initialAccountValue": 10000, "finalAccountValue": 12345.5}
        assert listed["done"].result is None and listed["failed"].summary is None
        assert listed["done"].to_api()["summary"] == summary and "summary" not in listed["failed"].to_api()
        assert "result" not in listed["done"].to_api()
        # A single backtest still comes back whole.
        assert store.get_backtest(user.id, done.id).result["final_account_value"] == 12345.5
