"""Routes: /health, /auth/token and /auth/logout."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import __version__
from .web import ApiError, field_text, read_fields, server_of
from .store import User
from .tokens import hash_token

SERVICE = "blankly-magics-deployment-server"


async def health(request: Request) -> Response:
    # isolation: "bubblewrap" when every run is confined, "none" when runs are not;
    # serverId: the same server whatever its URL (identity.py)
    server = server_of(request)
    return JSONResponse({"service": SERVICE, "version": __version__, "isolation": server.runner.isolation,
                         "serverId": server.server_id})


async def auth_token(request: Request) -> Response:
    server = server_of(request)
    fields = await read_fields(request)
    refresh = field_text(fields, "refreshToken", required=True, limit=1000)
    found = server.store.find_refresh_token(hash_token(refresh))
    if found is None:
        raise ApiError(
            401,
            "the refresh token is not valid (unknown or revoked); get a new one with "
            "`python -m blankly_magics.server token --data-dir DIR`",
        )
    session_id, user = found
    return JSONResponse(
        {
            "idToken": server.id_tokens.issue(user.id, session_id),
            "expiresIn": server.id_tokens.ttl,
            "data": {"user_id": user.id, "name": user.name, "server_id": server.server_id},
        }
    )


async def auth_logout(request: Request, user: User) -> dict[str, Any]:
    fields = await read_fields(request)
    refresh = field_text(fields, "refreshToken", required=True, limit=1000)
    revoked = server_of(request).store.revoke_refresh_token(hash_token(refresh), user.id)
    return {"status": "success", "revoked": revoked}
