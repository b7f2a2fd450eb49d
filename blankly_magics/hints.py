"""How each face spells the commands its messages point to.

A message says the same thing wherever it shows ("fetch it later with ..."); only
the command differs: ``%blankly result B1`` below a notebook cell,
``blankly-magics result B1`` in a terminal. Faces hand the workflow their ``Hints``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hints:
    blankly: str  # the subcommand prefix: "%blankly" or "blankly-magics"
    login: str  # how to sign in
    deploy: str  # how to deploy a notebook
    python: bool  # results land in the user's Python session ("r = _" makes sense)
    period: str = "--start YYYY-MM-DD --end YYYY-MM-DD"  # how a backtest's period is given

    def command(self, verb: str, *words: str) -> str:
        return " ".join((self.blankly, verb, *words))

    def result(self, backtest_id: str) -> str:
        return self.command("result", backtest_id)

    def sweep(self, sweep_id: str) -> str:
        return self.command("sweep", sweep_id)

    def cancel(self, run_id: str) -> str:
        return self.command("cancel", run_id)

    def follow_backtest(self, backtest_id: str) -> str:
        return self.command("logs", "--backtest", backtest_id, "--follow")

    def follow_model(self, model_id: str) -> str:
        return self.command("logs", "--model", model_id, "--follow")

    def stop(self, model_id: str) -> str:
        return self.command("stop", "--model", model_id)

    def status(self, model_id: str) -> str:
        return self.command("status", "--model", model_id)

    def versions(self, model: str) -> str:
        return self.command("versions", "--model", model)

    def backtests(self, model_id: str) -> str:
        return self.command("backtests", "--model", model_id)

    def restart_local(self) -> str:
        return f"run {self.login} to start the local server again"


NOTEBOOK = Hints(blankly="%blankly", login="%blankly_login", deploy="%%blankly_deploy", python=True)
PANEL = Hints(blankly="%blankly", login="%blankly_login", deploy="%%blankly_deploy", python=True,
              period="the panel's Start and End fields")
TERMINAL = Hints(blankly="blankly-magics", login="blankly-magics login", deploy="blankly-magics deploy", python=False)
