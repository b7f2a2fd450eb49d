"""Backtests to report on and compare, shared by the tests of every face.

``backtested`` is one real server for the whole run on which alice backtested two versions of
the RSI model on the shipped prices (version 1 buys below RSI 30, version 2 below 35) and mallory
backtested a model of her own. ``signed(server, user)`` is a real signed-in session for a test that
must not touch HOME (the session is not made current).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

from blankly_magics.client import DeploymentClient
from blankly_magics.session import Session

from tests.fixtures_notebooks import RSI_BACKTEST_ARGS
from tests.fixtures_server import ServerHandle, wait_for, write_model_zip
from tests.server.runs import model_zip, rsi_script

DESCRIPTIONS = ("RSI 30/70", "RSI 35/70")


@dataclass(frozen=True)
class Backtested:
    server: ServerHandle
    model_id: str
    backtest_ids: tuple  # alice's: version 1's, version 2's
    foreign_id: str  # mallory's


def upload_backtest(server: ServerHandle, user: str, zip_path: Path, description: str,
                    model_id: Optional[str] = None) -> dict:
    fields = {"backtestArgs": json.dumps(RSI_BACKTEST_ARGS), "backtestDescription": description}
    fields.update({"modelId": model_id} if model_id else {"name": zip_path.stem, "createNew": "true"})
    with open(zip_path, "rb") as fh:
        answer = server.request("POST", "/model/backtest", user=user, files={"model": ("m.zip", fh)}, data=fields)
    assert answer.status_code == 200, answer.text
    return answer.json()


def finished(server: ServerHandle, user: str, backtest_id: str) -> dict:
    def state() -> dict:
        answer = server.request("GET", "/backtest/status", user=user, params={"backtestId": backtest_id}).json()
        return answer if answer["status"] in ("completed", "failed", "cancelled") else {}

    return wait_for(state, f"backtest {backtest_id}", 300)


def signed(server: ServerHandle, user: str = "alice") -> Session:
    client = DeploymentClient(server.url, server.refresh_token(user))
    client.login()
    return Session(client, server.url, client.user_id or "", False, "test", None, user)


@pytest.fixture(scope="session")
def backtested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backtested]:
    root = tmp_path_factory.mktemp("backtested")
    server = ServerHandle(root / "data", root / "server.log").start()
    try:
        first = upload_backtest(server, "alice", model_zip(root / "rsi.zip", rsi_script()), DESCRIPTIONS[0])
        variant = rsi_script().replace("rsi[-1] < 30", "rsi[-1] < 35")
        second = upload_backtest(server, "alice", model_zip(root / "rsi35.zip", variant), DESCRIPTIONS[1],
                                 model_id=first["modelId"])
        foreign = upload_backtest(server, "mallory", write_model_zip(root / "hers.zip"), "hers")
        ids = (first["backtestId"], second["backtestId"])
        for backtest_id in ids:
            state = finished(server, "alice", backtest_id)
            assert state["status"] == "completed", (state, server.log())
        yield Backtested(server, first["modelId"], ids, foreign["backtestId"])
    finally:
        server.close()
