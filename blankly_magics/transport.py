"""HTTP under the deployment client: retries, streamed uploads, and every failure worded as one line.

Only idempotent reads are retried, by urllib3's ``Retry`` on the requests adapter
(connection failures and 502/503/504, exponential backoff, a bounded
``Retry-After``): a retried upload or POST could store or start something twice,
and a read the server left unanswered for the whole timeout is not asked again.
Every failure becomes one :class:`DeploymentError`: a JSON ``{"error": ...}``, an
HTML page from a proxy, an empty body, a refused connection alike. Zips are
streamed from disk, never read whole.
"""
from __future__ import annotations

import json
import os
import re
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union
from urllib.parse import urlsplit, urlunsplit

from .errors import BlanklyError

HOSTED_URL = "https://deploy.blankly.finance"
RETRYABLE_STATUS = (502, 503, 504)
MAX_RETRY_WAIT = 30.0  # seconds: a Retry-After longer than this is not worth blocking a notebook for

Progress = Callable[[int, int], None]
PathLike = Union[str, "os.PathLike[str]"]


class DeploymentError(BlanklyError):
    """Anything that went wrong talking to a deployment server, as one clear line.

    ``hint`` (what to do when the server cannot be reached at all) follows the route."""

    def __init__(
        self, status: Optional[int], message: str, route: Optional[str] = None, *,
        retry_after: Optional[float] = None, hint: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.route = route
        self.retry_after = retry_after  # seconds the server asked us to wait (429/503), if it said
        self.hint = hint

    def __str__(self) -> str:
        where = []
        if self.status is not None:
            where.append(f"HTTP {self.status}")
        if self.route:
            where.append(self.route)
        text = f"{self.message} ({', '.join(where)})" if where else self.message
        return " ".join((f"{text}; {self.hint}" if self.hint else text).split())


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


# ---------------------------------------------------------------- the session and its retries


def http_session(retries: int, backoff: float) -> Any:
    """A ``requests.Session`` whose adapters retry idempotent reads (see the module's docstring)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.exceptions import ReadTimeoutError
    from urllib3.util.retry import Retry

    class ReadRetry(Retry):
        """``Retry`` for GETs only; anything else fails at once, as requests does by default."""

        DEFAULT_BACKOFF_MAX = MAX_RETRY_WAIT

        def increment(self, method: Optional[str] = None, *args: Any, **kwargs: Any) -> Retry:
            error = kwargs.get("error")
            if (method and not self._is_method_retryable(method)) or isinstance(error, ReadTimeoutError):
                return Retry(0, read=False).increment(method, *args, **kwargs)
            return super().increment(method, *args, **kwargs)

        def parse_retry_after(self, retry_after: str) -> float:
            return min(super().parse_retry_after(retry_after), MAX_RETRY_WAIT)

    retry = ReadRetry(
        total=retries, connect=retries, read=retries, status=retries, other=0, redirect=0,
        backoff_factor=backoff, status_forcelist=RETRYABLE_STATUS, allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True, raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# ---------------------------------------------------------------- uploads


def form_fields(fields: Mapping[str, Any]) -> dict[str, str]:
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


class Upload:
    """A zip plus form fields; :meth:`open` makes a fresh streaming body for each attempt.

    ``progress`` may raise to stop the upload: the chunk being read is then never sent."""

    def __init__(self, path: PathLike, fields: Mapping[str, Any], progress: Optional[Progress]) -> None:
        self.path = Path(path)
        self.fields = form_fields(fields)
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


# ---------------------------------------------------------------- failures as one line


def transport_error(
    exc: Exception, url: str, route: str, *, uploading: bool, seconds: float, hint: str = ""
) -> DeploymentError:
    """A requests exception as a DeploymentError; ``hint`` goes with "cannot reach" only."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return DeploymentError(None, f"cannot reach the deployment server at {url}: no answer", route, hint=hint)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return DeploymentError(None, f"the deployment server at {url} did not answer within {seconds:g} s", route)
    if isinstance(exc, requests.exceptions.SSLError):
        return DeploymentError(None, f"TLS failed talking to {url}: {_reason(exc)}", route)
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _refused(exc):
            return DeploymentError(None, f"cannot reach the deployment server at {url}: is it running?", route,
                                   hint=hint)
        if uploading:
            message = (
                f"the upload to {url} failed: the connection broke ({_reason(exc)}); "
                "nothing was stored unless the server says so, so it is safe to try again"
            )
        else:
            message = f"lost the connection to the deployment server at {url} ({_reason(exc)})"
        return DeploymentError(None, message, route)
    return DeploymentError(None, f"request to {url} failed: {_reason(exc)}", route)


def decode(response: Any, url: str, route: str, *, signed_in: bool, scrub: Callable[[str], str]) -> Any:
    """The JSON body of an answer, or a DeploymentError; ``scrub`` takes tokens out of echoed text."""
    status = response.status_code
    text = response.text
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))  # proxies' 503 pages carry it too
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    if body is None:
        kind = response.headers.get("Content-Type") or "no content type"
        shown = _tagless_snippet(text) if text.strip() else "an empty body"
        raise DeploymentError(
            status, f"the server at {url} answered with something that is not JSON ({kind}): {shown}", route,
            retry_after=retry_after,
        )
    if status >= 400 or (isinstance(body, dict) and "error" in body and len(body) == 1):
        message = _error_text(body) or response.reason or "request failed"
        if status == 401 and signed_in:
            message = f"{message}: {SIGN_IN_AGAIN}"
        raise DeploymentError(status, scrub(message), route, retry_after=retry_after)
    if 300 <= status < 400:
        raise DeploymentError(
            status, f"the server at {url} redirected to {response.headers.get('Location')!r}: check the URL", route
        )
    return body


SIGN_IN_AGAIN = "sign in again with %blankly_login"


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
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


def _tagless_snippet(text: str, limit: int = 80) -> str:
    """The start of an HTML/text body as one short plain line, for error messages."""
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text)
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


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
