"""``python -m blankly_magics.server``: run the local deployment server, or print a refresh token.

    python -m blankly_magics.server [--host H] [--port P] [--data-dir DIR] [--tls-cert F --tls-key F] ...
    python -m blankly_magics.server token [--data-dir DIR] [--user NAME]
    python -m blankly_magics.server rotate-exchange-key [--data-dir DIR] [--exchange-key-file FILE]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import ray_serve

LISTENING = "Blankly deployment server listening on {url}"
SERVER_FILE = "server.json"
LOCK_FILE = "server.lock"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _number(cast: Callable[[str], float], low: float, high: float, what: str) -> Callable[[str], Any]:
    """An argparse type: ``cast`` the text and keep it within [low, high]."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range for {what}")
        return value

    return parse


_positive_int = _number(int, 1, float("inf"), "a whole number of at least 1")
_port = _number(int, 0, 65535, "a port number (0-65535)")
_megabytes = _number(float, 1e-6, float("inf"), "a size in MB above 0")
_seconds = _number(float, 0, float("inf"), "a number of seconds (0 or more)")


def serve_parser() -> argparse.ArgumentParser:
    from .config import default_data_dir
    from .rotation import exchange_key_option

    parser = argparse.ArgumentParser(
        prog="python -m blankly_magics.server",
        description=(
            "Run the local Blankly deployment server: the Deployment API (projects, models,\n"
            "immutable versions, backtests, live deployments) on this machine, backed by\n"
            "SQLite in the data dir. It binds 127.0.0.1 unless --host says otherwise."
        ),
        epilog=(
            "Print a refresh token for a local user (created when new) with:\n"
            "  python -m blankly_magics.server token [--data-dir DIR] [--user NAME]\n"
            "Once listening, the server writes DIR/server.json = {url, pid, version, startedAt};"
            "\nSIGINT/SIGTERM stop it cleanly (live models too; they restart with the server; with\n"
            "--executor ray runs go on on the cluster and the next server takes them back)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)",
    )
    parser.add_argument(
        "--port", type=_port, default=8127,
        help="TCP port (default 8127; 0 picks a free port, see server.json for the URL)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, metavar="DIR",
        help=f"where the database, uploaded versions and run logs live (default {default_data_dir()}, "
        "or $BLANKLY_MAGICS_HOME)",
    )
    parser.add_argument(
        "--token-ttl", type=_positive_int, default=3600, metavar="SECONDS",
        help="how long an idToken from /auth/token stays valid (default 3600)",
    )
    parser.add_argument(
        "--max-upload", type=_megabytes, default=100, metavar="MB",
        help="largest model zip accepted, in MB (default 100); bigger uploads get 413",
    )
    parser.add_argument(
        "--max-unpacked", type=_megabytes, default=1024, metavar="MB",
        help="largest total a model zip may unpack to, in MB (default 1024); more is a zip bomb: 413",
    )
    parser.add_argument(
        "--max-entries", type=_positive_int, default=10_000, metavar="N",
        help="most files and folders a model zip may hold (default 10000); more gets 413",
    )
    parser.add_argument(
        "--plans", type=Path, default=None, metavar="FILE.json",
        help='plans to offer instead of the defaults sized from this machine: {"backtesting": '
        '{"small": {"cpu": 1000, "ram": 2048, "timeout": 900}}, "live": {"nano": {"cpu": 250, '
        '"ram": 512}}} (cpu in millicores, ram in MB, timeout in seconds; the first is the default)',
    )
    parser.add_argument(
        "--max-workers", type=_positive_int, default=None, metavar="N",
        help="backtests run at once (default: the number of CPU cores); more wait in the queue",
    )
    parser.add_argument(
        "--warm-workers", type=_number(int, 0, 64, "a whole number from 0 to 64"), default=None, metavar="N",
        help="sandboxes kept ready with Blankly, numpy and pandas imported, so a backtest starts at once "
        "(default: one per core, within a twentieth of the memory; 0 starts every run cold)",
    )
    parser.add_argument(
        "--max-queue", type=_positive_int, default=100, metavar="N",
        help="backtests allowed to wait at once (default 100); more are refused with 429",
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info",
        help="server log verbosity on stderr (default info: one line per request)",
    )
    _isolation_option(parser)
    parser.add_argument(
        "--run-network", choices=("on", "off"), default="on",
        help="network for runs (default on: backtests download prices, live models reach exchanges); "
        "off gives each run a network of its own with loopback only",
    )
    exchange_key_option(parser)
    ray_serve.add_options(parser, _seconds)
    parser.add_argument("--tls-cert", type=Path, default=None, metavar="FILE",
                        help="serve HTTPS with this certificate (PEM; needs --tls-key)")
    parser.add_argument("--tls-key", type=Path, default=None, metavar="FILE",
                        help="the private key of --tls-cert (PEM)")
    parser.add_argument(
        "--insecure-http", action="store_true",
        help="serve plain HTTP on a --host beyond loopback: only behind a proxy that terminates TLS",
    )
    return parser


def _isolation_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--isolation", choices=("auto", "bubblewrap", "none"), default="auto",
        help="how runs are confined: auto (default) uses bubblewrap when it works here, else runs "
        "them unconfined for one local user only; bubblewrap refuses to start without it; none runs "
        "them unconfined and accepts that any user's model can read every user's data",
    )


def token_parser() -> argparse.ArgumentParser:
    from .config import default_data_dir

    parser = argparse.ArgumentParser(
        prog="python -m blankly_magics.server token",
        description=(
            "Print a new refresh token for a local user of the server's data dir (the user and "
            "its personal project are created when new). Exchange it at POST /auth/token, or "
            "give it to %blankly_login. Only its hash is stored: keep the printed token safe."
        ),
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, metavar="DIR",
        help=f"the server's data dir (default {default_data_dir()}, or $BLANKLY_MAGICS_HOME)",
    )
    parser.add_argument("--user", default="local", help="user name (default 'local')")
    _isolation_option(parser)
    return parser


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _lock_data_dir(data_dir: Path) -> Optional[Any]:
    """Hold an exclusive lock on the data dir for this process's life; None if another has it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; run one server per data dir yourself
        return object()
    handle = open(data_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(False)  # model processes must not hold the server's port
    return sock


def _check_exposure(args: argparse.Namespace, data_dir: Path) -> tuple[Any, bool]:
    """The isolation runs get and whether HTTPS is served; IsolationError for what is refused."""
    from .isolation import IsolationError, check_host, check_tls, check_users, detect
    from .store import Store

    if (args.tls_cert is None) != (args.tls_key is None):
        raise IsolationError("--tls-cert and --tls-key go together: give both (PEM files), or neither")
    tls = args.tls_cert is not None
    if tls:  # a missing file or a key that does not match: said now, in one line
        import ssl

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise IsolationError(f"cannot use --tls-cert {args.tls_cert} with --tls-key {args.tls_key}: "
                                 f"{getattr(exc, 'strerror', None) or exc}") from None
    check_tls(args.host, tls, args.insecure_http)
    isolation = ray_serve.isolation(args) if args.executor == "ray" else detect(args.isolation, data_dir)
    check_host(isolation, args.host)
    if args.run_network == "off" and isolation.mode == "none":
        raise IsolationError("--run-network off needs confined runs, and runs cannot be confined here "
                             f"({isolation.reason})")
    with Store(data_dir) as store:
        check_users(isolation, store.user_names())
    return isolation, tls


def _check_exchange_key(data_dir: Path, key_file: Optional[Path]) -> None:
    """The exchange key file opens (made when new); KeyRingError, in one line, when it cannot be used."""
    from .config import ServerConfig
    from .keystore import open_keys
    from .store import Store

    with Store(data_dir) as store:
        open_keys(store, ServerConfig(data_dir, exchange_key_file=key_file).exchange_key_path)


def _url(host: str, sock: socket.socket, scheme: str = "http") -> str:
    port = sock.getsockname()[1]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .. import __version__
    from ..errors import BlanklyError
    from .app import create_app
    from .config import MB, PlansError, ServerConfig, default_data_dir, default_plans, load_plans
    from .isolation import IsolationError
    from .keyring import KeyRingError
    from .store import Store, private_dir
    from .zipcheck import ZipLimits

    os.umask(0o077)  # everything under the data dir is this user's only
    try:
        plans = load_plans(args.plans) if args.plans else default_plans()
    except PlansError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    try:
        private_dir(data_dir)
        lock = _lock_data_dir(data_dir)
        if lock is not None:
            Store(data_dir).close()  # fail here, in one line, on an unusable database
    except (OSError, sqlite3.Error) as exc:
        print(f"error: cannot use the data dir {data_dir}: {exc}", file=sys.stderr)
        return 1
    if lock is None:
        print(
            f"error: another server is already using {data_dir} "
            f"(see {data_dir / SERVER_FILE}); stop it or pick another --data-dir",
            file=sys.stderr,
        )
        return 1
    try:
        isolation, tls = _check_exposure(args, data_dir)
        _check_exchange_key(data_dir, args.exchange_key_file)
    except (IsolationError, KeyRingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BlanklyError as exc:  # the Ray cluster does not answer
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(isolation.describe(), file=sys.stderr, flush=True)
    if args.executor == "ray" and not args.plans:
        plans = ray_serve.cluster_plans(args.ray_address) or plans
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    url = _url(args.host, sock, "https" if tls else "http")
    config = ServerConfig(
        data_dir=data_dir,
        host=args.host,
        port=sock.getsockname()[1],
        token_ttl=args.token_ttl,
        max_upload=int(args.max_upload * MB),
        zip_limits=ZipLimits(max_entries=args.max_entries, max_uncompressed=int(args.max_unpacked * MB)),
        plans=plans,
        max_workers=args.max_workers,
        warm_workers=args.warm_workers,
        max_queue=args.max_queue,
        log_level=args.log_level,
        isolation=isolation.mode,
        bwrap=isolation.bwrap,
        run_network=args.run_network == "on",
        exchange_key_file=args.exchange_key_file,
        executor=args.executor,
        ray_address=args.ray_address,
        ray_schedule_wait=args.ray_schedule_wait,
        ray_secrets_listen=args.ray_secrets_listen,
        ray_secrets_url=args.ray_secrets_url,
    )
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server_file = data_dir / SERVER_FILE

    class _Server(uvicorn.Server):
        # server.json appears once the app is ready and goes before the process ends
        # (uvicorn re-raises SIGTERM after a graceful shutdown, so no later code runs).
        async def startup(self, sockets: Optional[list] = None) -> None:
            await super().startup(sockets)
            if self.started:
                _write_json_atomic(
                    server_file,
                    {"url": url, "pid": os.getpid(), "version": __version__, "startedAt": time.time()},
                )
                print(LISTENING.format(url=url), flush=True)

        async def shutdown(self, sockets: Optional[list] = None) -> None:
            try:
                await super().shutdown(sockets)
            finally:
                _remove_server_file(server_file)

    server = _Server(
        uvicorn.Config(
            create_app(config),
            log_level=args.log_level,
            access_log=args.log_level in ("info", "debug"),
            lifespan="on",
            ws="none",  # no websocket routes; also avoids importing a mismatched websockets
            timeout_graceful_shutdown=10,
            server_header=False,
            ssl_certfile=str(args.tls_cert) if tls else None,
            ssl_keyfile=str(args.tls_key) if tls else None,
        )
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled
        pass
    finally:
        _remove_server_file(server_file)
        sock.close()
    return 0 if server.started else 1


def _remove_server_file(path: Path) -> None:
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def token(args: argparse.Namespace) -> int:
    from .config import default_data_dir
    from .isolation import check_users, detect
    from .store import Store
    from .tokens import issue_refresh_token

    os.umask(0o077)
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    try:
        isolation = detect(args.isolation, data_dir)
        if isolation.mode == "none" and not isolation.accepted:
            with Store(data_dir) as store:
                check_users(isolation, store.user_names(), args.user.strip())
        print(issue_refresh_token(data_dir, args.user))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "token":
        return token(token_parser().parse_args(argv[1:]))
    if argv and argv[0] == "rotate-exchange-key":
        from .rotation import rotate_exchange_key, rotate_parser

        return rotate_exchange_key(rotate_parser().parse_args(argv[1:]))
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return serve(serve_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
