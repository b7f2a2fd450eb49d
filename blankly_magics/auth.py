"""Where a refresh token comes from, and where it is kept.

Sources, in order: ``--token-env VAR``, ``BLANKLY_REFRESH_TOKEN``, the Blankly CLI's
token file, a hidden prompt. The file is the one ``blankly login`` writes, so one
login serves both tools; we write it atomically with mode 0600 and keep any other
keys in it. ``capture_browser_token`` replaces the CLI's port-9082 listener: a
one-shot server on loopback that takes the sign-in page's redirect.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

from .config import ENV_TOKEN, environ
from .errors import BlanklyError
from .files import atomic_write, private_dir

HOSTED_SIGNIN_URL = "https://app.blankly.finance/auth/signin?redirectUrl=/deploy"
BROWSER_PORT = 9082

Prompt = Callable[[str], str]


class SignInError(BlanklyError):
    """Signing in failed; the message says what to do."""


def token_file() -> Path:
    """The Blankly CLI's token file, computed as ``blankly.deployment.login`` does.

    The CLI does not read ``XDG_DATA_HOME``, so neither do we: another path would
    split the login between the two tools."""
    home = Path.home()
    if sys.platform == "win32":
        base = home / "AppData/Roaming"
    elif sys.platform == "darwin":
        base = home / "Library/Application Support"
    elif sys.platform.startswith("linux"):
        base = home / ".local/share"
    else:
        base = home
    return base / "blankly" / "auth.json"


def _read_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SignInError(f"cannot read the token file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SignInError(
            f"the token file {path} is not the JSON object the Blankly CLI writes; "
            "delete it (or run %blankly_logout) and sign in again"
        )
    return data


def read_saved_token() -> Optional[str]:
    """The refresh token in the Blankly CLI's file, or None when there is none."""
    token = _read_file(token_file()).get("token")
    return token.strip() if isinstance(token, str) and token.strip() else None


def _write(path: Path, data: dict) -> None:
    """The token file, whole or not at all, readable by its owner only (in a folder only they can open)."""
    private_dir(path.parent)
    atomic_write(path, json.dumps(data))


def save_token(token: str) -> Path:
    """Keep ``token`` in the Blankly CLI's file (0600), keeping the file's other keys."""
    path = token_file()
    try:
        data = _read_file(path)
    except SignInError:
        data = {}  # an unreadable/foreign file is replaced: the user just signed in
    data["token"] = token
    try:
        _write(path, data)
    except OSError as exc:
        raise SignInError(f"signed in, but cannot keep the token in {path}: {exc.strerror}") from None
    return path


def forget_token() -> bool:
    """Remove the saved token (as ``blankly logout`` does); True if there was one."""
    path = token_file()
    try:
        data = _read_file(path)
    except SignInError:
        data = {"token": None}
    if "token" not in data:
        return False
    del data["token"]
    try:
        if data:
            _write(path, data)  # keep what else the CLI stored
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise SignInError(f"cannot remove the token from {path}: {exc.strerror}") from None
    return True


def clean_token(text: str) -> str:
    """The token in what a user pasted: the bare token, or the whole redirect URL."""
    text = text.strip().strip("'\"")
    if "token=" in text:
        values = parse_qs(urlsplit(text).query or text.split("?", 1)[-1]).get("token")
        if values:
            text = values[0].strip()
    if not text or any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise SignInError("that is not a refresh token: paste the token (or the whole redirect URL) on one line")
    return text


def resolve_refresh_token(token_env: Optional[str] = None, prompt: Optional[Prompt] = None) -> tuple[str, str]:
    """``(token, source)`` from the first source that has one; the source is for messages."""
    if token_env:
        value = environ(token_env)
        if value is None:
            raise SignInError(
                f"the environment variable {token_env} is not set or is empty: set it to your refresh token"
            )
        return clean_token(value), f"${token_env}"
    value = environ(ENV_TOKEN)
    if value is not None:
        return clean_token(value), f"${ENV_TOKEN}"
    saved = read_saved_token()
    if saved:
        return saved, str(token_file())
    return ask_token(prompt), "prompt"


def ask_token(prompt: Optional[Prompt] = None, text: str = "Blankly refresh token (hidden): ") -> str:
    """Ask for the token without echoing it (``getpass``; Jupyter shows a password box)."""
    if prompt is None:
        import getpass

        prompt = getpass.getpass  # looked up now: ipykernel replaces it in a kernel
    try:
        answer = prompt(text)
    except (EOFError, KeyboardInterrupt):
        raise SignInError("no token entered: sign-in cancelled") from None
    if not answer or not answer.strip():
        raise SignInError(
            f"no token entered: set {ENV_TOKEN}, run `blankly login`, or paste the token from the sign-in redirect"
        )
    return clean_token(answer)


_DONE_PAGE = (
    b"<!doctype html><html><head><meta charset='utf-8'><title>Signed in</title></head>"
    b"<body style='font-family:sans-serif'><h2>Signed in to Blankly.</h2>"
    b"<p>You can close this tab and go back to your notebook.</p></body></html>"
)
_WAIT_PAGE = b"<!doctype html><html><body>Waiting for the sign-in redirect (no token in this address).</body></html>"


def _redirect_handler(found: list[str]) -> type:
    """A request handler that answers the sign-in redirect and puts its token in ``found``."""
    from http.server import BaseHTTPRequestHandler

    class Redirect(BaseHTTPRequestHandler):
        timeout = 5  # a connection that never sends its request must not hold the wait

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            values = parse_qs(urlsplit(self.path).query).get("token")
            token = values[0].strip() if values else ""
            page = _DONE_PAGE if token else _WAIT_PAGE
            self.send_response(200 if token else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(page)
            if token:
                found.append(token)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # the default logs the request line, token included, to stderr

    return Redirect


def capture_browser_token(
    port: int = BROWSER_PORT,
    timeout: float = 120.0,
    open_browser: bool = False,
    link: Optional[str] = HOSTED_SIGNIN_URL,
    on_ready: Optional[Callable[[str], None]] = None,
) -> Optional[str]:
    """Wait for the sign-in page to redirect to ``http://localhost:PORT/?token=...``.

    Listens on 127.0.0.1 only, answers the redirect with a "you can close this tab"
    page and returns the token; None when ``timeout`` seconds pass without one.
    ``on_ready(address)`` is called once listening (to show the link at the right time)."""
    from http.server import HTTPServer

    found: list[str] = []
    try:
        server = HTTPServer(("127.0.0.1", port), _redirect_handler(found))
    except OSError as exc:
        raise SignInError(
            f"cannot listen on 127.0.0.1:{port} for the sign-in redirect ({exc.strerror}): "
            "is another sign-in (or `blankly login`) waiting? Close it, or paste the token at the prompt"
        ) from None
    deadline = time.monotonic() + timeout
    try:
        address = f"http://localhost:{server.server_address[1]}/"
        if on_ready is not None:
            on_ready(address)
        if open_browser and link:
            import webbrowser

            try:
                webbrowser.open(link)
            except Exception:  # no browser where the kernel runs: the link was shown
                pass
        while not found:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            server.timeout = min(left, 1.0)
            server.handle_request()
        return found[0]
    finally:
        server.server_close()
