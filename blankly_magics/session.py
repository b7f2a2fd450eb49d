"""Who is signed in to which server: the one place that holds it, for magics and panel alike.

``sign_in()`` with no URL uses the embedded local server; with a URL it takes a
refresh token from the first source that has one (see :mod:`blankly_magics.auth`),
exchanges it, and keeps it in the Blankly CLI's token file. Nothing here prints:
callers say one line about the :class:`Session` they get back.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from .auth import (
    BROWSER_PORT,
    HOSTED_SIGNIN_URL,
    SignInError,
    ask_token,
    capture_browser_token,
    clean_token,
    forget_token,
    resolve_refresh_token,
    save_token,
    token_file,
)
from .client import HOSTED_URL, DeploymentClient, DeploymentError, normalize_url
from .hints import NOTEBOOK, Hints

__all__ = ["Session", "SignInError", "sign_in", "current", "require", "sign_out"]

LOCAL_SOURCE = "local server"
FORM_SOURCE = "the sign-in form"  # a token handed to sign_in(token=...), e.g. typed in the panel

Notify = Callable[[str], None]

_lock = threading.Lock()
_current: Optional["Session"] = None


@dataclass
class Session:
    """A signed-in client and where its token came from; its repr holds no secret."""

    client: DeploymentClient = field(repr=False, compare=False)
    url: str
    user_id: str
    local: bool
    token_source: str
    token_file: Optional[Path] = None  # where the refresh token is kept, None when not kept
    user_name: Optional[str] = None
    data_dir: Optional[Path] = None  # the embedded server's data dir (local sessions)

    def describe(self) -> str:
        """The line every face shows after signing in."""
        who = self.user_name or self.user_id
        if self.local:
            return f"Signed in to the local deployment server at {self.url} as {who}"
        return f"Signed in to {self.url} as {who}"


def current() -> Optional[Session]:
    with _lock:
        return _current


def require(hints: Hints = NOTEBOOK) -> Session:
    """The current session, or a SignInError saying how to sign in."""
    signed = current()
    if signed is None:
        raise SignInError(f"not signed in: run {hints.login} first")
    return signed


def _set_current(session: Optional[Session]) -> Optional[Session]:
    global _current
    with _lock:
        previous, _current = _current, session
    return previous


def _login(client: DeploymentClient, source: str) -> None:
    try:
        client.login()
    except DeploymentError as exc:
        client.close()
        if exc.status in (400, 401, 403):
            raise SignInError(
                f"the server at {client.url} refused the refresh token from {source}: get a new one "
                "(%blankly_login --browser, or `blankly login`) and sign in again"
            ) from None
        raise SignInError(str(exc)) from None


def _sign_in_local(data_dir: Union[str, Path, None], timeout: float, hints: Hints) -> Session:
    from .embedded import EmbeddedServerError, ensure_local_server, local_refresh_token

    hint = hints.restart_local()
    try:
        server = ensure_local_server(data_dir, timeout=timeout)
        client = DeploymentClient(server.url, local_refresh_token(server.data_dir), unreachable_hint=hint)
        try:
            client.login()
        except DeploymentError as exc:
            client.close()
            if exc.status not in (400, 401, 403):
                raise
            # The cached token is unknown to this server (its data dir was wiped): issue a new one.
            client = DeploymentClient(server.url, local_refresh_token(server.data_dir, renew=True),
                                      unreachable_hint=hint)
            client.login()
    except (DeploymentError, EmbeddedServerError) as exc:
        raise SignInError(f"cannot use the local deployment server: {exc}") from None
    assert client.user_id is not None
    return Session(client, client.url, client.user_id, True, LOCAL_SOURCE, None, client.user_name, server.data_dir)


def _browser_token(
    url: str, notify: Optional[Notify], link: Optional[str], port: int, timeout: float, prompt: Optional[Callable]
) -> tuple[str, str]:
    """Capture the sign-in redirect; on a timeout or a busy port, fall back to the prompt."""
    if link is None and url == HOSTED_URL:
        link = HOSTED_SIGNIN_URL

    def ready(address: str) -> None:
        if notify is not None:
            where = f"open {link} and sign in" if link else "sign in on your server's page"
            notify(f"{where}; waiting {timeout:g} s for the redirect to {address}?token=...")

    try:
        token = capture_browser_token(port=port, timeout=timeout, link=link, on_ready=ready)
    except SignInError as exc:  # the port is busy
        if notify is not None:
            notify(str(exc))
        return ask_token(prompt), "prompt"
    if token:
        return token, "browser"
    if notify is not None:
        notify("no redirect arrived; paste the token from the redirect address (?token=...)")
    return ask_token(prompt), "prompt"


def sign_in(
    url: Optional[str] = None,
    *,
    token_env: Optional[str] = None,
    browser: bool = False,
    prompt: Optional[Callable[[str], str]] = None,
    token: Optional[str] = None,
    data_dir: Union[str, Path, None] = None,
    notify: Optional[Notify] = None,
    signin_link: Optional[str] = None,
    browser_port: int = BROWSER_PORT,
    browser_timeout: float = 120.0,
    server_timeout: float = 30.0,
    hints: Hints = NOTEBOOK,
) -> Session:
    """Sign in and make the result the current session.

    ``url=None``: the embedded local server (started or attached), no token needed.
    Otherwise the token comes from ``token`` when given (typed in the panel's form:
    passed as an argument, never through the environment, so no child process
    inherits it), else ``--token-env``, ``BLANKLY_REFRESH_TOKEN``, the Blankly CLI's
    file, then a hidden prompt; ``browser=True`` captures the sign-in redirect
    before those. ``notify`` receives the few lines a user must see while waiting
    (the link to open); the caller decides how to show them. ``hints`` spell the
    command that starts the local server again, for when it cannot be reached."""
    if url is None:
        session = _sign_in_local(data_dir, server_timeout, hints)
    else:
        try:
            base = normalize_url(url)
        except DeploymentError as exc:
            raise SignInError(str(exc)) from None
        if token is not None:
            token, source = clean_token(token), FORM_SOURCE
        elif browser:
            token, source = _browser_token(base, notify, signin_link, browser_port, browser_timeout, prompt)
        else:
            token, source = resolve_refresh_token(token_env, prompt)
        client = DeploymentClient(base, token)
        _login(client, source)
        kept: Optional[Path] = token_file()
        if source != str(kept):
            try:
                kept = save_token(token)  # shared with the Blankly CLI, 0600
            except SignInError as exc:  # signed in all the same; say why it will not last
                kept = None
                if notify is not None:
                    notify(str(exc))
        assert client.user_id is not None
        session = Session(client, base, client.user_id, False, source, kept, client.user_name)
    previous = _set_current(session)
    if previous is not None and previous.client is not session.client:
        previous.client.close()
    return session


def release(signed: Session) -> None:
    """End this process's use of ``signed`` and keep its token where it is kept (a command of
    the CLI signs in for its own run only)."""
    global _current
    with _lock:
        if _current is signed:
            _current = None
    signed.client.close()


def sign_out(revoke: bool = True) -> bool:
    """Sign out; True when the server revoked the refresh token.

    A remote session's token is revoked (``POST /auth/logout``) and removed from
    the Blankly CLI's file, as ``blankly logout`` would. A local session only ends
    here: its token is the machine's key to its own server, shared by its kernels.
    With nobody signed in, the saved token is still removed (the user asked to log out)."""
    session = _set_current(None)
    revoked = False
    if session is not None and not session.local and revoke:
        try:
            session.client.logout()
            revoked = True
        except DeploymentError:
            pass  # unreachable or already revoked: forgetting it locally is what matters
    if session is None or not session.local:
        forget_token()
    if session is not None:
        session.client.close()
    return revoked
