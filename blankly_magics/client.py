"""A client for Blankly's Deployment API (ours, the hosted one, or any that honours the contract).

One ``requests.Session`` per client. Every call has (connect, read) timeouts; only
GETs are retried (connection failures and 502/503/504, exponential backoff that
honours a bounded ``Retry-After``), because a retried upload or POST could store
or start something twice. Every failure becomes one :class:`DeploymentError`
with a one-line message: a JSON ``{"error": ...}``, an HTML page from a proxy, an
empty body, a refused connection alike. A 401 exchanges the refresh token once
and replays the request once. Zips are streamed from disk, never read whole.

Tokens are kept in :class:`Secret` wrappers so they never show in a ``repr``, a
variable inspector, an exception or a log line.
"""
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union
from urllib.parse import urlsplit, urlunsplit

HOSTED_URL = "https://deploy.blankly.finance"
RETRYABLE_STATUS = (502, 503, 504)
MAX_RETRY_WAIT = 30.0  # seconds: a Retry-After longer than this is not worth blocking a notebook for
SIGN_IN_AGAIN = "sign in again with %blankly_login"

Progress = Callable[[int, int], None]
PathLike = Union[str, "os.PathLike[str]"]


class DeploymentError(Exception):
    """Anything that went wrong talking to a deployment server, as one clear line."""

    def __init__(
        self,
        status: Optional[int],
        message: str,
        route: Optional[str] = None,
        *,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.route = route
        self.retry_after = retry_after  # seconds the server asked us to wait (429/503), if it said

    def __str__(self) -> str:
        where = []
        if self.status is not None:
            where.append(f"HTTP {self.status}")
        if self.route:
            where.append(self.route)
        return f"{self.message} ({', '.join(where)})" if where else self.message


class Secret:
    """A string that shows as ``***`` everywhere except through :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # keep it out of pickles too
        raise TypeError("a Secret cannot be pickled")


def normalize_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash, or a DeploymentError saying how to fix it."""
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise DeploymentError(
            None,
            f"not a deployment server URL: {text!r}; give an http:// or https:// URL, "
            f"e.g. http://127.0.0.1:8000 or {HOSTED_URL}",
        )
    if parts.username or parts.password:
        raise DeploymentError(
            None, f"the server URL {parts.hostname!r} must not carry a user or password; sign in with a token instead"
        )
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), "", ""))


def _tagless_snippet(text: str, limit: int = 80) -> str:
    """The start of an HTML/text body as one short plain line, for error messages."""
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text)
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds)


def _form(fields: Mapping[str, Any]) -> dict[str, str]:
    """Form values as the reference client's ``requests`` call sends them: None left out,
    booleans as ``True``/``False``, numbers as text."""
    return {k: str(v) for k, v in fields.items() if v is not None}


class _Throttle:
    """Calls ``progress(sent, total)`` at start, about every 0.5%, and at the end:
    a 300 MB upload reads 8 KB at a time, far too often for a widget to redraw."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.total = total
        self.step = max(total // 200, 64 * 1024)
        self.last = -1

    def __call__(self, sent: int) -> None:
        if sent == self.last:  # the encoder reports again on the empty read at the end
            return
        if sent >= self.total or self.last < 0 or sent - self.last >= self.step:
            self.last = sent
            self.progress(min(sent, self.total), self.total)


class _Upload:
    """A zip plus form fields; :meth:`open` makes a fresh streaming body for each attempt."""

    def __init__(self, path: PathLike, fields: Mapping[str, Any], progress: Optional[Progress]) -> None:
        self.path = Path(path)
        self.fields = _form(fields)
        self.progress = progress

    def open(self, route: str) -> tuple[Any, Any]:
        from requests_toolbelt.multipart.encoder import MultipartEncoder, MultipartEncoderMonitor

        try:
            handle = open(self.path, "rb")
        except OSError as exc:
            raise DeploymentError(None, f"cannot read the zip {self.path}: {exc.strerror or exc}", route) from None
        encoder = MultipartEncoder(fields={**self.fields, "model": (self.path.name, handle, "application/zip")})
        callback = None
        if self.progress is not None:
            throttle = _Throttle(self.progress, encoder.len)
            throttle(0)
            callback = lambda monitor: throttle(monitor.bytes_read)  # noqa: E731
        return MultipartEncoderMonitor(encoder, callback), handle


class DeploymentClient:
    """Talks to one deployment server for one user."""

    def __init__(
        self,
        url: str,
        refresh_token: Optional[str] = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        upload_timeout: Optional[float] = None,
    ) -> None:
        import requests

        self.url = normalize_url(url)
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        # Reading the answer to an upload waits for the server to check and store the zip.
        self.upload_timeout = float(upload_timeout) if upload_timeout is not None else max(self.timeout, 300.0)
        self.user_id: Optional[str] = None
        self.user_name: Optional[str] = None
        self._refresh = Secret(refresh_token) if refresh_token else None
        self._id_token: Optional[Secret] = None
        self._expires_at: Optional[float] = None  # time.monotonic() when the idToken stops working
        self._generation = 0  # bumped at each exchange, so concurrent 401s exchange only once
        self._lock = threading.Lock()
        self._http = requests.Session()

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
                answer = self._call(
                    "POST", route, data={"refreshToken": self._refresh.reveal()}, auth=False
                )
            except DeploymentError as exc:
                if exc.status in (400, 401, 403):
                    raise DeploymentError(
                        exc.status,
                        f"the server at {self.url} refused the refresh token ({exc.message}): {SIGN_IN_AGAIN}",
                        route,
                    ) from None
                raise
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

    # ---- the request loop -------------------------------------------------------------

    def _call(
        self,
        method: str,
        route: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        data: Optional[Mapping[str, Any]] = None,
        json_body: Optional[Any] = None,
        upload: Optional[_Upload] = None,
        auth: bool = True,
    ) -> Any:
        import requests

        url = self.url + route
        replayed = False
        attempt = 0
        while True:
            headers: dict[str, str] = {}
            generation = self._generation
            if auth:
                headers, generation = self._token_header()
            handle = None
            body: Any = _form(data) if data is not None else None
            timeout = (min(self.timeout, 10.0), self.timeout)
            if upload is not None:
                body, handle = upload.open(route)
                headers["Content-Type"] = body.content_type
                timeout = (min(self.timeout, 10.0), self.upload_timeout)
            try:
                response = self._http.request(
                    method, url, params=_form(params) if params else None, data=body, json=json_body,
                    headers=headers, timeout=timeout, allow_redirects=False,
                )
            except requests.exceptions.RequestException as exc:
                failure, retryable = self._transport_error(exc, route, upload is not None)
                if method == "GET" and retryable and attempt < self.retries:
                    attempt += 1
                    self._sleep(attempt, None)
                    continue
                raise failure from None
            finally:
                if handle is not None:
                    handle.close()

            if response.status_code == 401 and auth and not replayed and self._refresh is not None:
                replayed = True
                self._exchange(generation)
                continue
            if method == "GET" and response.status_code in RETRYABLE_STATUS and attempt < self.retries:
                attempt += 1
                self._sleep(attempt, _retry_after(response.headers.get("Retry-After")))
                response.close()
                continue
            return self._decode(response, route, auth)

    def _sleep(self, attempt: int, retry_after: Optional[float]) -> None:
        wait = self.backoff * (2 ** (attempt - 1))
        if retry_after is not None:
            wait = max(wait, retry_after)
        time.sleep(min(wait, MAX_RETRY_WAIT))

    def _transport_error(self, exc: Exception, route: str, uploading: bool) -> tuple[DeploymentError, bool]:
        """A requests exception as a DeploymentError, and whether a GET may try again."""
        import requests

        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return DeploymentError(None, f"cannot reach the deployment server at {self.url}: no answer", route), True
        if isinstance(exc, requests.exceptions.ReadTimeout):
            seconds = self.upload_timeout if uploading else self.timeout
            return DeploymentError(
                None, f"the deployment server at {self.url} did not answer within {seconds:g} s", route
            ), False
        if isinstance(exc, requests.exceptions.SSLError):
            return DeploymentError(None, f"TLS failed talking to {self.url}: {_reason(exc)}", route), False
        if isinstance(exc, requests.exceptions.ConnectionError):
            if _refused(exc):
                message = f"cannot reach the deployment server at {self.url}: is it running?"
            elif uploading:
                message = (
                    f"the upload to {self.url} failed: the connection broke ({_reason(exc)}); "
                    "nothing was stored unless the server says so, so it is safe to try again"
                )
            else:
                message = f"lost the connection to the deployment server at {self.url} ({_reason(exc)})"
            return DeploymentError(None, message, route), True
        return DeploymentError(None, f"request to {self.url} failed: {_reason(exc)}", route), False

    def _decode(self, response: Any, route: str, auth: bool) -> Any:
        status = response.status_code
        text = response.text
        retry_after = _retry_after(response.headers.get("Retry-After"))  # proxies' 503 pages carry it too
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            body = None
        if body is None:
            kind = response.headers.get("Content-Type") or "no content type"
            shown = _tagless_snippet(text) if text.strip() else "an empty body"
            raise DeploymentError(
                status, f"the server at {self.url} answered with something that is not JSON ({kind}): {shown}", route,
                retry_after=retry_after,
            )
        if status >= 400 or (isinstance(body, dict) and "error" in body and len(body) == 1):
            message = _error_text(body) or response.reason or "request failed"
            if status == 401 and auth:
                message = f"{message}: {SIGN_IN_AGAIN}"
            raise DeploymentError(
                status, self._scrub(message), route, retry_after=retry_after
            )
        if 300 <= status < 400:
            raise DeploymentError(
                status, f"the server at {self.url} redirected to {response.headers.get('Location')!r}: check the URL",
                route,
            )
        return body

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

    # ---- uploads --------------------------------------------------------------------------

    def _upload_fields(
        self, *, name: Optional[str], model_id: Optional[str], project_id: Optional[str],
        python_version: Optional[str], model_type: str,
    ) -> dict[str, Any]:
        return {
            "name": name,
            "modelId": model_id,
            "projectId": self._project(project_id),
            "createNew": model_id is None,
            "pythonVersion": python_version or f"{sys.version_info.major}.{sys.version_info.minor}",
            "type": model_type,
        }

    def deploy(
        self, zip_path: PathLike, *, plan: str, name: Optional[str] = None, model_id: Optional[str] = None,
        project_id: Optional[str] = None, description: str = "", version_description: str = "",
        python_version: Optional[str] = None, model_type: str = "strategy", schedule: Optional[str] = None,
        progress: Optional[Progress] = None,
    ) -> dict:
        """Upload a new version and run it live. Never retried: a retry could deploy twice."""
        return self._send_zip(
            "/model/deploy", zip_path, progress, plan=plan, name=name, model_id=model_id, project_id=project_id,
            description=description, version_description=version_description, python_version=python_version,
            model_type=model_type, schedule=schedule,
        )

    def upload(
        self, zip_path: PathLike, *, plan: Optional[str] = None, name: Optional[str] = None,
        model_id: Optional[str] = None, project_id: Optional[str] = None, description: str = "",
        version_description: str = "", python_version: Optional[str] = None, model_type: str = "strategy",
        schedule: Optional[str] = None, progress: Optional[Progress] = None,
    ) -> dict:
        """Store a new version without running it."""
        return self._send_zip(
            "/model/upload", zip_path, progress, plan=plan, name=name, model_id=model_id, project_id=project_id,
            description=description, version_description=version_description, python_version=python_version,
            model_type=model_type, schedule=schedule,
        )

    def _send_zip(
        self, route: str, zip_path: PathLike, progress: Optional[Progress], *, plan: Optional[str],
        name: Optional[str], model_id: Optional[str], project_id: Optional[str], description: str,
        version_description: str, python_version: Optional[str], model_type: str, schedule: Optional[str],
    ) -> dict:
        fields = self._upload_fields(
            name=name, model_id=model_id, project_id=project_id, python_version=python_version, model_type=model_type
        )
        fields.update(
            plan=plan, generalDescription=description, versionDescription=version_description, schedule=schedule
        )
        return self._call("POST", route, upload=_Upload(zip_path, fields, progress))

    def backtest(
        self, zip_path: PathLike, *, plan: str, backtest_args: Mapping[str, Any], name: Optional[str] = None,
        model_id: Optional[str] = None, project_id: Optional[str] = None, description: str = "",
        python_version: Optional[str] = None, model_type: str = "strategy", progress: Optional[Progress] = None,
    ) -> dict:
        """Upload a new version and queue a backtest of it; ``backtestArgs`` travels as a JSON string."""
        fields = self._upload_fields(
            name=name, model_id=model_id, project_id=project_id, python_version=python_version, model_type=model_type
        )
        fields.update(plan=plan, backtestArgs=json.dumps(dict(backtest_args)), backtestDescription=description)
        return self._call("POST", "/model/backtest", upload=_Upload(zip_path, fields, progress))

    def backtest_uploaded(
        self, model_id: str, version_id: str, backtest_args: Mapping[str, Any], description: str = "",
        project_id: Optional[str] = None, plan: Optional[str] = None,
    ) -> dict:
        """Backtest a version already on the server (JSON route: ``backtestArgs`` is an object)."""
        body = {
            "projectId": self._project(project_id), "modelId": model_id, "versionId": version_id,
            "backtestArgs": dict(backtest_args), "backtestDescription": description,
        }
        if plan is not None:
            body["plan"] = plan
        return self._call("POST", "/model/backtestUploadedModel", json_body=body)

    def run(
        self, model_id: str, version_id: Optional[str] = None, plan: Optional[str] = None,
        project_id: Optional[str] = None,
    ) -> dict:
        return self._call(
            "POST", "/model/run",
            data={"modelId": model_id, "versionId": version_id, "plan": plan, "projectId": project_id},
        )

    # ---- backtests ------------------------------------------------------------------------

    def backtest_status(self, backtest_id: str) -> dict:
        return self._call("GET", "/backtest/status", params={"backtestId": backtest_id})

    def backtest_result(self, backtest_id: str) -> dict:
        return self._call("GET", "/backtest/result", params={"backtestId": backtest_id})

    def backtest_logs(self, backtest_id: str, offset: int = 0) -> dict:
        return self._call("GET", "/backtest/logs", params={"backtestId": backtest_id, "offset": offset})

    def cancel_backtest(self, backtest_id: str) -> dict:
        return self._call("POST", "/backtest/cancel", data={"backtestId": backtest_id})


def _fill_ids(model: Any, project_id: str) -> Any:
    """Servers name a model's id ``id`` or ``modelId``; give both, as the reference client does."""
    if isinstance(model, dict):
        if "modelId" not in model and "id" in model:
            model["modelId"] = model["id"]
        if "id" not in model and "modelId" in model:
            model["id"] = model["modelId"]
        model.setdefault("projectId", project_id)
    return model


def _error_text(body: Any) -> Optional[str]:
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if value:
                return json.dumps(value)[:200]
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (urllib3 keeps the cause in ``.reason`` and ``args``), and so on."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        item = todo.pop()
        if item in seen:
            continue
        seen.append(item)
        todo.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
        for attr in ("reason", "__cause__", "__context__"):
            inner = getattr(item, attr, None)
            if isinstance(inner, BaseException):
                todo.append(inner)
    return seen


def _refused(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(exc)}
    return bool(names & {"ConnectionRefusedError", "NewConnectionError"}) or any(
        isinstance(e, OSError) and "Connection refused" in str(e) for e in _chain(exc)
    )


def _reason(exc: BaseException) -> str:
    """The innermost useful words of a requests/urllib3 exception, without its object reprs."""
    for inner in reversed(_chain(exc)):
        if isinstance(inner, OSError) and inner.strerror:
            return inner.strerror
    text = str(exc)
    text = re.sub(r"<[^>]*>", "", text)
    text = re.sub(r"\(Caused by .*", "", text)
    return " ".join(text.split())[:120] or type(exc).__name__
