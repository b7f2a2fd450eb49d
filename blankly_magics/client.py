"""A client for Blankly's Deployment API (ours, the hosted one, or any that honours the contract).

One ``requests.Session`` per client (see :mod:`blankly_magics.transport` for the
retries, the streamed uploads and how failures read). Every call has (connect,
read) timeouts. A 401 exchanges the refresh token once and replays the request
once. Tokens are kept in :class:`Secret` wrappers so they never show in a
``repr``, a variable inspector, an exception or a log line.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Mapping, Optional

from .transport import (
    HOSTED_URL,
    SIGN_IN_AGAIN,
    DeploymentError,
    PathLike,
    Progress,
    Secret,
    Upload,
    decode,
    form_fields,
    http_session,
    normalize_url,
    transport_error,
)

__all__ = ["DeploymentClient", "DeploymentError", "Secret", "normalize_url", "HOSTED_URL"]


class DeploymentClient:
    """Talks to one deployment server for one user.

    ``unreachable_hint`` follows "cannot reach the deployment server" (the local
    server's session says how to start it again)."""

    def __init__(
        self,
        url: str,
        refresh_token: Optional[str] = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        upload_timeout: Optional[float] = None,
        unreachable_hint: str = "",
    ) -> None:
        self.url = normalize_url(url)
        self.timeout = float(timeout)
        # Reading the answer to an upload waits for the server to check and store the zip.
        self.upload_timeout = float(upload_timeout) if upload_timeout is not None else max(self.timeout, 300.0)
        self.unreachable_hint = unreachable_hint
        self.user_id: Optional[str] = None
        self.user_name: Optional[str] = None
        self.server_id: Optional[str] = None  # the server's stable id, when its sign-in answer reports one
        self._refresh = Secret(refresh_token) if refresh_token else None
        self._id_token: Optional[Secret] = None
        self._expires_at: Optional[float] = None  # time.monotonic() when the idToken stops working
        self._generation = 0  # bumped at each exchange, so concurrent 401s exchange only once
        self._lock = threading.Lock()
        self._http = http_session(max(0, int(retries)), float(backoff))

    def __repr__(self) -> str:
        return f"DeploymentClient(url={self.url!r}, user={self.user_id!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "DeploymentClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- authentication -------------------------------------------------------------

    @property
    def signed_in(self) -> bool:
        return self._id_token is not None

    def login(self) -> str:
        """Exchange the refresh token for an idToken; returns the user id."""
        self._exchange(self._generation)
        assert self.user_id is not None
        return self.user_id

    def logout(self) -> dict:
        """Revoke the refresh token on the server and forget both tokens here."""
        if self._refresh is None:
            raise DeploymentError(None, "not signed in: there is no token to revoke", "/auth/logout")
        answer = self._call("POST", "/auth/logout", data={"refreshToken": self._refresh.reveal()})
        with self._lock:
            self._refresh = None
            self._id_token = None
            self._expires_at = None
        return answer

    def _exchange(self, seen_generation: int) -> None:
        """POST /auth/token, unless another thread already did since ``seen_generation``."""
        route = "/auth/token"
        with self._lock:
            if self._generation != seen_generation and self._id_token is not None:
                return
            if self._refresh is None:
                raise DeploymentError(401, f"no refresh token for {self.url}: {SIGN_IN_AGAIN}", route)
            started = time.monotonic()
            try:
                answer = self._call("POST", route, data={"refreshToken": self._refresh.reveal()}, auth=False)
            except DeploymentError as exc:
                if exc.status in (400, 401, 403):
                    raise DeploymentError(
                        exc.status,
                        f"the server at {self.url} refused the refresh token ({exc.message}): {SIGN_IN_AGAIN}",
                        route,
                    ) from None
                raise
            self._take(answer, started, route)

    def _take(self, answer: Any, started: float, route: str) -> None:
        """Keep the idToken and user from a sign-in answer (the caller holds the lock)."""
        id_token = answer.get("idToken") if isinstance(answer, dict) else None
        data = answer.get("data") if isinstance(answer, dict) else None
        user_id = data.get("user_id") if isinstance(data, dict) else None
        if not isinstance(id_token, str) or not id_token or not user_id:
            raise DeploymentError(
                None,
                f"the server at {self.url} answered the sign-in without an idToken and data.user_id: "
                "is it a Blankly deployment server?",
                route,
            )
        self._id_token = Secret(id_token)
        self.user_id = str(user_id)
        self.user_name = str(data.get("name") or self.user_id)
        server_id = data.get("server_id")
        self.server_id = server_id if isinstance(server_id, str) and server_id else None
        expires_in = answer.get("expiresIn")
        if isinstance(expires_in, (int, float)) and expires_in > 0:
            # exchange a little early: up to 30 s, half the life of a short-lived token
            self._expires_at = started + expires_in - min(30.0, expires_in / 2)
        else:
            self._expires_at = None
        self._generation += 1

    def _token_header(self) -> tuple[dict[str, str], int]:
        """The ``token`` header, exchanging first when there is none or it is about to expire.

        Expiry is checked before sending because a server may refuse an upload before
        reading its body and close the connection: the 401 would be lost in a reset."""
        generation = self._generation
        expires_at = self._expires_at
        if self._id_token is None or (expires_at is not None and time.monotonic() >= expires_at):
            self._exchange(generation)
        token = self._id_token
        if token is None:  # logged out meanwhile
            raise DeploymentError(401, f"not signed in to {self.url}: {SIGN_IN_AGAIN}")
        return {"token": token.reveal()}, self._generation

    # ---- one request, replayed once after a 401 ------------------------------------------

    def _call(
        self,
        method: str,
        route: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        data: Optional[Mapping[str, Any]] = None,
        json_body: Optional[Any] = None,
        upload: Optional[Upload] = None,
        auth: bool = True,
        read_timeout: Optional[float] = None,
    ) -> Any:
        replayed = False
        while True:
            headers: dict[str, str] = {}
            generation = self._generation
            if auth:
                headers, generation = self._token_header()
            response = self._send(method, route, headers, params=params, data=data, json_body=json_body,
                                  upload=upload, read_timeout=read_timeout)
            if response.status_code == 401 and auth and not replayed and self._refresh is not None:
                replayed = True
                response.close()
                self._exchange(generation)
                continue
            return decode(response, self.url, route, signed_in=auth, scrub=self._scrub)

    def _send(
        self, method: str, route: str, headers: dict[str, str], *, params: Optional[Mapping[str, Any]],
        data: Optional[Mapping[str, Any]], json_body: Optional[Any], upload: Optional[Upload],
        read_timeout: Optional[float] = None,
    ) -> Any:
        import requests

        handle = None
        body: Any = form_fields(data) if data is not None else None
        read_timeout = read_timeout or self.timeout
        if upload is not None:
            body, handle = upload.open(route)
            headers["Content-Type"] = body.content_type
            read_timeout = self.upload_timeout
        try:
            return self._http.request(
                method, self.url + route, params=form_fields(params) if params else None, data=body, json=json_body,
                headers=headers, timeout=(min(self.timeout, 10.0), read_timeout), allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise transport_error(exc, self.url, route, uploading=upload is not None, seconds=read_timeout,
                                  hint=self.unreachable_hint) from None
        finally:
            if handle is not None:
                handle.close()

    def _scrub(self, text: str) -> str:
        """Servers should never echo a token, but if one does it must not reach the user's screen."""
        for secret in (self._refresh, self._id_token):
            if secret is not None and secret.reveal() in text:
                text = text.replace(secret.reveal(), "***")
        return text

    # ---- projects -----------------------------------------------------------------------

    def _project(self, project_id: Optional[str]) -> str:
        if project_id:
            return project_id
        if self.user_id is None:
            self.login()
        assert self.user_id is not None
        return self.user_id  # the personal project's id is the user's id

    def projects(self) -> list:
        return self._call("GET", "/project/list")

    def create_project(self, name: str, description: str = "") -> dict:
        return self._call("POST", "/project/create", data={"name": name, "description": description})

    def plans(self, kind: str = "backtesting") -> dict:
        return self._call("POST", "/project/plans", data={"type": kind})

    def teams(self) -> list:
        return self._call("GET", "/project/teams")

    # ---- models ---------------------------------------------------------------------------

    def models(self, project_id: Optional[str] = None) -> list:
        project = self._project(project_id)
        answer = self._call("POST", "/model/list", data={"projectId": project})
        for model in answer if isinstance(answer, list) else ():
            _fill_ids(model, project)
        return answer

    def create_model(
        self, name: str, *, project_id: Optional[str] = None, model_type: str = "strategy", description: str = ""
    ) -> dict:
        project = self._project(project_id)
        answer = self._call(
            "POST", "/model/create-model",
            data={"projectId": project, "type": model_type, "name": name, "description": description},
        )
        return _fill_ids(answer, project)

    def model_details(self, model_id: str, project_id: Optional[str] = None) -> dict:
        project = self._project(project_id)
        answer = self._call("POST", "/model/details", data={"projectId": project, "modelId": model_id})
        return _fill_ids(answer, project)

    def status(self) -> list:
        return self._call("GET", "/model/status")

    def versions(self, model_id: str) -> list:
        return self._call("GET", "/model/versions", params={"modelId": model_id})

    def backtests(self, model_id: str) -> list:
        return self._call("GET", "/model/backtests", params={"modelId": model_id})

    def deployment(self, model_id: str) -> dict:
        return self._call("GET", "/model/deployment", params={"modelId": model_id})

    def model_logs(self, model_id: str, offset: int = 0) -> dict:
        return self._call("GET", "/model/logs", params={"modelId": model_id, "offset": offset})

    def kill(self, model_id: str) -> dict:
        return self._call("POST", "/model/kill", data={"modelId": model_id})

    def delete(self, model_id: str) -> dict:
        return self._call("POST", "/model/delete", data={"modelId": model_id})

    # ---- uploads (never retried: a retry could store or start a version twice) -------------

    def _send_zip(
        self, route: str, zip_path: PathLike, progress: Optional[Progress], *, name: Optional[str],
        model_id: Optional[str], project_id: Optional[str], python_version: Optional[str], model_type: str,
        **fields: Any,
    ) -> dict:
        form = {
            "name": name,
            "modelId": model_id,
            "projectId": self._project(project_id),
            "createNew": model_id is None,
            "pythonVersion": python_version or f"{sys.version_info.major}.{sys.version_info.minor}",
            "type": model_type,
            **fields,
        }
        return self._call("POST", route, upload=Upload(zip_path, form, progress))

    def deploy(
        self, zip_path: PathLike, *, plan: str, name: Optional[str] = None, model_id: Optional[str] = None,
        project_id: Optional[str] = None, description: str = "", version_description: str = "",
        python_version: Optional[str] = None, model_type: str = "strategy", schedule: Optional[str] = None,
        progress: Optional[Progress] = None,
    ) -> dict:
        """Upload a new version and run it live."""
        return self._send_zip(
            "/model/deploy", zip_path, progress, name=name, model_id=model_id, project_id=project_id,
            python_version=python_version, model_type=model_type, plan=plan, generalDescription=description,
            versionDescription=version_description, schedule=schedule,
        )

    def upload(
        self, zip_path: PathLike, *, plan: Optional[str] = None, name: Optional[str] = None,
        model_id: Optional[str] = None, project_id: Optional[str] = None, description: str = "",
        version_description: str = "", python_version: Optional[str] = None, model_type: str = "strategy",
        schedule: Optional[str] = None, progress: Optional[Progress] = None,
    ) -> dict:
        """Store a new version without running it."""
        return self._send_zip(
            "/model/upload", zip_path, progress, name=name, model_id=model_id, project_id=project_id,
            python_version=python_version, model_type=model_type, plan=plan, generalDescription=description,
            versionDescription=version_description, schedule=schedule,
        )

    def backtest(
        self, zip_path: PathLike, *, plan: str, backtest_args: Mapping[str, Any], name: Optional[str] = None,
        model_id: Optional[str] = None, project_id: Optional[str] = None, description: str = "",
        python_version: Optional[str] = None, model_type: str = "strategy", progress: Optional[Progress] = None,
        parameters: Optional[Mapping[str, Any]] = None,
    ) -> dict:
        """Upload a new version and queue a backtest of it; ``backtestArgs`` (and ``parameters``, the
        overrides of the parameters cell) travel as JSON strings."""
        return self._send_zip(
            "/model/backtest", zip_path, progress, name=name, model_id=model_id, project_id=project_id,
            python_version=python_version, model_type=model_type, plan=plan,
            backtestArgs=json.dumps(dict(backtest_args)), backtestDescription=description,
            parameters=json.dumps(dict(parameters)) if parameters else None,
        )

    def backtest_uploaded(
        self, model_id: str, version_id: str, backtest_args: Mapping[str, Any], description: str = "",
        project_id: Optional[str] = None, plan: Optional[str] = None,
        parameters: Optional[Mapping[str, Any]] = None,
    ) -> dict:
        """Backtest a version already on the server (JSON route: ``backtestArgs`` and ``parameters`` are objects)."""
        body = {
            "projectId": self._project(project_id), "modelId": model_id, "versionId": version_id,
            "backtestArgs": dict(backtest_args), "backtestDescription": description,
        }
        if plan is not None:
            body["plan"] = plan
        if parameters:
            body["parameters"] = dict(parameters)
        return self._call("POST", "/model/backtestUploadedModel", json_body=body)

    # ---- sweeps: one backtest per point of a grid of parameter values ---------------------

    def create_sweep(
        self, zip_path: PathLike, *, plan: str, grid: Mapping[str, Any], objective: Mapping[str, str],
        constraints: Any = (), parameters: Optional[Mapping[str, Any]] = None,
        backtest_args: Optional[Mapping[str, Any]] = None, name: Optional[str] = None,
        model_id: Optional[str] = None, project_id: Optional[str] = None, description: str = "",
        python_version: Optional[str] = None, model_type: str = "strategy", progress: Optional[Progress] = None,
    ) -> dict:
        """Upload a new version and sweep it (POST /sweep/create, multipart): ``{"sweepId", "points",
        "backtestIds", "modelId", "versionId", ...}``."""
        return self._send_zip(
            "/sweep/create", zip_path, progress, name=name, model_id=model_id, project_id=project_id,
            python_version=python_version, model_type=model_type, plan=plan, **_sweep_form(
                grid, objective, constraints, parameters, backtest_args, description),
        )

    def sweep_uploaded(
        self, model_id: str, version_id: Optional[str], *, grid: Mapping[str, Any], objective: Mapping[str, str],
        constraints: Any = (), parameters: Optional[Mapping[str, Any]] = None,
        backtest_args: Optional[Mapping[str, Any]] = None, description: str = "", plan: Optional[str] = None,
    ) -> dict:
        """Sweep a version already on the server (POST /sweep/create, JSON; ``version_id`` None: the latest)."""
        body: dict[str, Any] = {"modelId": model_id, "grid": dict(grid), "objective": dict(objective),
                                "constraints": list(constraints), "description": description}
        for key, value in (("versionId", version_id), ("plan", plan), ("parameters", parameters),
                           ("backtestArgs", backtest_args)):
            if value is not None:
                body[key] = dict(value) if isinstance(value, Mapping) else value
        return self._call("POST", "/sweep/create", json_body=body)

    def sweep_status(self, sweep_id: str, *, wait: float = 0.0, seen: Optional[int] = None) -> dict:
        """A sweep's state; with ``wait`` (seconds) and ``seen`` (the last answer's ``finished``), the
        server answers as soon as another point ends. The read timeout allows for the wait."""
        params: dict[str, Any] = {"sweepId": sweep_id}
        if wait and seen is not None:
            params.update(wait=f"{wait:g}", seen=seen)
        return self._call("GET", "/sweep/status", params=params, read_timeout=self.timeout + wait)

    def sweep_table(self, sweep_id: str) -> dict:
        return self._call("GET", "/sweep/table", params={"sweepId": sweep_id})

    def sweeps(self, model_id: Optional[str] = None) -> list:
        return self._call("GET", "/sweep/list", params={"modelId": model_id} if model_id else None)

    def cancel_sweep(self, sweep_id: str) -> dict:
        return self._call("POST", "/sweep/cancel", data={"sweepId": sweep_id})

    def run(
        self, model_id: str, version_id: Optional[str] = None, plan: Optional[str] = None,
        project_id: Optional[str] = None,
    ) -> dict:
        return self._call(
            "POST", "/model/run",
            data={"modelId": model_id, "versionId": version_id, "plan": plan, "projectId": project_id},
        )

    # ---- backtests ------------------------------------------------------------------------

    def backtest_status(self, backtest_id: str, *, wait: Optional[float] = None, seen: Optional[str] = None) -> dict:
        """The backtest's status. With ``wait``, a long poll: a server that supports it answers once
        the status differs from ``seen`` (default: the one it has now) or is final, or after ``wait``
        seconds (kept within half the read timeout); others answer at once."""
        params: dict[str, Any] = {"backtestId": backtest_id}
        if wait:
            params.update(wait=f"{min(wait, self.timeout / 2):g}", status=seen)
        return self._call("GET", "/backtest/status", params=params)

    def backtest_result(self, backtest_id: str) -> dict:
        return self._call("GET", "/backtest/result", params={"backtestId": backtest_id})

    def backtest_logs(self, backtest_id: str, offset: int = 0) -> dict:
        return self._call("GET", "/backtest/logs", params={"backtestId": backtest_id, "offset": offset})

    def cancel_backtest(self, backtest_id: str) -> dict:
        return self._call("POST", "/backtest/cancel", data={"backtestId": backtest_id})

    # ---- live activity ----------------------------------------------------------------------

    def activity(self, model_id: str, since: int = 0, recent: Optional[int] = None) -> dict:
        """A page of what the live model reported from cursor ``since``; ``recent``: the end of it."""
        return self._call("GET", "/model/activity", params={"modelId": model_id, "since": since, "recent": recent})

    # ---- exchange keys: values go out in a request body and never come back ------------------

    def keys(self) -> list:
        """The stored exchange/portfolio names (and field names), never a value."""
        answer = self._call("GET", "/keys/list")
        return list(answer.get("keys") or []) if isinstance(answer, dict) else []

    def set_keys(self, keys: Mapping[str, Any]) -> dict:
        """Store keys.json's ``{exchange: {portfolio: {FIELD: value}}}`` on the server, all at once."""
        try:
            return self._call("POST", "/keys/set", json_body={"keys": dict(keys)})
        except DeploymentError as exc:  # a server must never echo a value; if one did, it stops here
            for value in sorted(_strings(keys), key=len, reverse=True):
                exc.message = exc.message.replace(value, "***") if len(value) >= 4 else exc.message
            exc.args = (exc.message,)
            raise

    def delete_keys(self, exchange: str, portfolio: Optional[str] = None) -> dict:
        return self._call("POST", "/keys/delete", data={"exchange": exchange, "portfolio": portfolio})


def _strings(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _sweep_form(grid: Mapping[str, Any], objective: Mapping[str, str], constraints: Any,
                parameters: Optional[Mapping[str, Any]], backtest_args: Optional[Mapping[str, Any]],
                description: str) -> dict[str, Any]:
    """A sweep's fields as an upload's form carries them (JSON as text)."""
    return {
        "grid": json.dumps(dict(grid)), "objective": json.dumps(dict(objective)),
        "constraints": json.dumps(list(constraints)), "description": description,
        "parameters": json.dumps(dict(parameters)) if parameters else None,
        "backtestArgs": json.dumps(dict(backtest_args)) if backtest_args is not None else None,
    }


def _fill_ids(model: Any, project_id: str) -> Any:
    """Servers name a model's id ``id`` or ``modelId``; give both, as the reference client does."""
    if isinstance(model, dict):
        if "modelId" not in model and "id" in model:
            model["modelId"] = model["id"]
        if "id" not in model and "modelId" in model:
            model["id"] = model["modelId"]
        model.setdefault("projectId", project_id)
    return model
