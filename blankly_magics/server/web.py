"""Shared request plumbing: the JSON error, authentication and reading form fields.

Every route reads its fields through here, so bad input gets the same short
``{"error": ...}`` wherever it is sent.
"""
from __future__ import annotations

import json
import re
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .state import Server
from .store import User
from .tokens import InvalidToken

MAX_FORM_BYTES = 1 << 20  # a non-upload request body (form or JSON)
_CONTROL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_OR_BREAK = re.compile(r"[\x01-\x1f\x7f-\x9f\u2028\u2029]")


class ApiError(Exception):
    """An expected failure: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: Optional[dict[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def server_of(request: Request) -> Server:
    return request.app.state.server


def authenticate(request: Request) -> User:
    server = server_of(request)
    token = request.headers.get("token")
    if not token:
        raise ApiError(
            401,
            "missing 'token' header: exchange your refresh token at POST /auth/token "
            "and send the idToken in a header named 'token'",
        )
    try:
        claims = server.id_tokens.verify(token)
    except InvalidToken as exc:
        raise ApiError(401, f"{exc}; exchange your refresh token again at POST /auth/token") from None
    user = server.store.session_user(claims.session_id, claims.user_id)
    if user is None:
        raise ApiError(401, "this sign-in was revoked (logged out); sign in again")
    return user


Handler = Callable[[Request, User], Awaitable[Any]]


def authed(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a route: authenticate first, answer the handler's value as JSON."""

    async def endpoint(request: Request) -> Response:
        user = authenticate(request)
        result = await handler(request, user)
        return result if isinstance(result, Response) else JSONResponse(result)

    endpoint.__name__ = handler.__name__
    return endpoint


async def read_fields(request: Request) -> dict[str, Any]:
    """The request's fields: the query string, overlaid by a form or JSON body."""
    fields: dict[str, Any] = dict(request.query_params)
    if request.method == "GET":
        return fields
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ApiError(413, f"the request body is larger than {MAX_FORM_BYTES} bytes")
    if not body:
        return fields
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the JSON body must be an object of fields")
        fields.update(data)
    elif ctype in ("application/x-www-form-urlencoded", ""):
        try:
            fields.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, f"the form body cannot be read: {exc}") from None
    else:
        raise ApiError(
            400, f"send this form as application/x-www-form-urlencoded or JSON, not {ctype}"
        )
    return fields


def field_text(fields: dict[str, Any], name: str, *, required: bool = False, limit: int = 10_000) -> str:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"missing required field '{name}'")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ApiError(400, f"field '{name}' must be text")
    text = str(value)
    if len(text) > limit:
        raise ApiError(400, f"field '{name}' is longer than {limit} characters")
    if "\x00" in text:
        raise ApiError(400, f"field '{name}' contains a NUL character")
    # Names and ids are one line; descriptions (the long fields) may hold tabs and newlines.
    # Other control characters only garble terminals and logs: refuse them.
    control = _CONTROL if limit > 200 else _CONTROL_OR_BREAK
    bad = control.search(text)
    if bad:
        raise ApiError(
            400, f"field '{name}' contains a control character ({bad.group()!r}); send plain text"
        )
    return text


def field_id(fields: dict[str, Any], name: str, required: bool = True) -> str:
    return field_text(fields, name, required=required, limit=200).strip()


def field_flag(fields: dict[str, Any], name: str) -> Optional[bool]:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ApiError(400, f"field '{name}' must be true or false, not {str(value)[:40]!r}")


def field_offset(fields: dict[str, Any]) -> int:
    raw = field_text(fields, "offset") or "0"
    try:
        offset = int(raw)
    except ValueError:
        offset = -1
    if offset < 0:
        raise ApiError(400, "offset must be a whole number >= 0 (the 'offset' of the last answer)")
    return offset
