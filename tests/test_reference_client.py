"""Blankly's own Deployment API client, unmodified, against our server.

``blankly.deployment.api.API`` is what the Blankly CLI uses; if it works here, the server
speaks the hosted service's dialect (form posts, the ``token`` header, the JSON route).
"""
from __future__ import annotations

import sys

import pytest

from tests.conftest import NO_BLANKLY
from tests.fixtures_server import wait_for, write_model_zip

api_module = pytest.importorskip("blankly.deployment.api", reason=NO_BLANKLY)

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_the_reference_client_works_unmodified(local_server, tmp_path, capsys):
    api = api_module.API(local_server.refresh_token("alice"), override_url=local_server.url)
    assert api.user_id == local_server.user_id("alice")

    projects = api.list_projects()
    assert [p["id"] for p in projects] == [api.user_id]
    created = api.create_project("RSI Models", "Bots that buy < 30 and sell > 70")
    assert created["name"] == "RSI Models" and created["id"]
    assert {p["id"] for p in api.list_projects()} == {api.user_id, created["id"]}

    for kind in ("backtesting", "live"):
        plans = api.get_plans(kind)
        assert plans and all({"cpu", "ram"} <= set(plan) for plan in plans.values())
    assert api.list_teams() == []

    model = api.create_model(created["id"], "strategy", "RSI", "buys low")
    assert model["modelId"] == model["id"] and model["projectId"] == created["id"]
    listed = api.list_models(created["id"])
    assert [(m["modelId"], m["name"], m["type"]) for m in listed] == [(model["id"], "RSI", "strategy")]
    assert [m["id"] for m in api.list_all_models()] == []  # the personal project has none yet
    keys = api.generate_keys(created["id"], f"Local keys for {model['id']}")
    assert keys["apiKey"] and keys["apiPass"]

    zip_path = write_model_zip(tmp_path / "model.zip")
    live_plan = next(iter(api.get_plans("live")))
    deployed = api.deploy(
        str(zip_path), model["id"], "first version", PYTHON, "strategy", live_plan,
        project_id=created["id"],
    )
    assert deployed["status"] == "success" and deployed["modelId"] == model["id"]
    details = api.get_details(created["id"], model["id"])
    assert [v["versionId"] for v in details["versions"]] == [deployed["versionId"]]
    assert details["versions"][0]["description"] == "first version"
    status = api.get_status()
    assert [(s["modelId"], s["versionId"]) for s in status] == [(model["id"], deployed["versionId"])]

    # The client sends projectId = the user's id for backtests, even for a model in another project.
    plan = next(iter(api.get_plans("backtesting")))
    backtest = api.backtest(str(zip_path), model["id"], {"to": "1y"}, plan, "strategy", PYTHON, "a test")
    assert backtest["status"] == "success" and backtest["modelId"] == model["id"]
    assert backtest["backtestId"] and backtest["versionId"] != deployed["versionId"]
    again = api.backtest_deployed(model["id"], {"to": "2y"}, deployed["versionId"], "stored version")
    assert again["status"] == "success" and again["versionId"] == deployed["versionId"]

    # Without a model id the client's deploy creates a model in the personal project.
    fresh = api.deploy(str(zip_path), None, "new", PYTHON, "strategy", live_plan)
    assert fresh["status"] == "success" and fresh["modelId"] != model["id"]
    assert [m["id"] for m in api.list_models()] == [fresh["modelId"]]

    backtests = local_server.request("GET", "/model/backtests", params={"modelId": model["id"]}).json()
    assert {b["backtestId"] for b in backtests} == {backtest["backtestId"], again["backtestId"]}
    args = {b["backtestId"]: b["args"] for b in backtests}
    assert args == {backtest["backtestId"]: {"to": "1y"}, again["backtestId"]: {"to": "2y"}}
    wait_for(
        lambda: all(
            local_server.request("GET", "/backtest/status", params={"backtestId": b}).json()["endedAt"]
            for b in args
        ),
        "both backtests to finish",
    )
    assert "Invalid Response" not in capsys.readouterr().out  # every answer was JSON


def test_the_reference_client_reports_a_bad_refresh_token(local_server, capsys):
    with pytest.raises(KeyError, match="Failed to authenticate"):
        api_module.API("not-a-refresh-token", override_url=local_server.url)
    captured = capsys.readouterr()
    assert "Unauthorized request" in captured.out + captured.err
