"""Submit backtests and deployments, wait for them, and turn answers into result objects.

The plain-Python layer the magics and the panel share: no IPython, no widgets.
Everything takes a signed-in ``session`` (``session.client`` is a
DeploymentClient, ``session.url`` its server) and a built ``Bundle``.
It also remembers, in a small side file next to the notebook, which model a
notebook deployed last on which server, so the next deploy adds a version to it,
and which upload to a new model is still unanswered (see find_uploaded_model).
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from .results import TERMINAL_STATES, BacktestResult, DeployResult

SIDE_FILE = ".blankly_magics.json"
PLAN_KINDS = {"backtest": "backtesting", "backtesting": "backtesting", "live": "live"}
LOG_TAIL_BYTES = 8192

Progress = Callable[[int, int], None]


class RunError(ValueError):
    """An expected problem with what was asked (an unknown plan, model or project), as one line."""


class BacktestArgsError(RunError):
    """A backtest period or balance Blankly's ``strategy.backtest()`` would refuse, caught before upload."""


# ---------------------------------------------------------------- backtest arguments

# Blankly's time_interval_to_seconds: a whole number and one unit ("mo" is read as "M").
SPAN = re.compile(r"[0-9]+(mo|[smhdwMyDcl])")
ASSET = re.compile(r"[A-Z0-9][A-Z0-9._-]*")
BALANCE_EXAMPLE = "write e.g. USD=10000 (several: USD=10000, BTC=0.5)"


def parse_balances(initial: Union[str, Iterable[str]]) -> dict[str, Union[int, float]]:
    """``"USD=10000, btc=0.5"`` (or ``["USD=10000", "BTC=0.5"]``) -> ``{"USD": 10000, "BTC": 0.5}``.

    Asset names are upper-cased: Blankly's account keys are ("USD", "BTC"), and a
    lower-case key would be an asset no exchange holds. Items split on commas or
    semicolons, so the panel's one field and repeated ``--initial`` read the same."""
    chunks = [initial] if isinstance(initial, str) else list(initial)
    balances: dict[str, Union[int, float]] = {}
    for chunk in chunks:
        for item in str(chunk).replace(";", ",").split(","):
            item = item.strip()
            if not item:
                continue
            asset, sep, amount = item.partition("=")
            asset = asset.strip().upper()
            try:
                number: Optional[float] = float(amount) if sep else None
            except ValueError:
                number = None
            if number is None or not math.isfinite(number) or not ASSET.fullmatch(asset):
                raise BacktestArgsError(f"initial balance {item!r} is not ASSET=AMOUNT: {BALANCE_EXAMPLE}")
            if number < 0:
                raise BacktestArgsError(f"initial balance {item!r} is negative: give an amount of 0 or more")
            if asset in balances:
                raise BacktestArgsError(f"initial balance of {asset} given twice: give each asset once")
            balances[asset] = int(number) if number.is_integer() else number
    return balances


def _iso(value: Any) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None  # another form pandas reads ("03/06/2018"): Blankly checks it


def check_period(args: dict) -> None:
    """Blankly's rule, said before upload: ``to`` (a span back from now), or both
    ``start_date`` and ``end_date``; a start after its end is a typo."""
    to, start, end = args.get("to"), args.get("start_date"), args.get("end_date")
    if to is not None and (start is not None or end is not None):
        raise BacktestArgsError("backtest period: give a start and an end date, or 'to' (a span like 1y), not both")
    if (start is None) != (end is None):
        raise BacktestArgsError(
            "backtest period: give both a start and an end date (like 2021-01-01), or 'to' (a span like 1y)"
        )
    if isinstance(to, str) and not SPAN.fullmatch(to):
        raise BacktestArgsError(f"backtest period: 'to' takes a span like 1y, 6M or 30d, not {to!r}")
    first, last = _iso(start), _iso(end)
    try:
        backwards = first is not None and last is not None and first >= last
    except TypeError:  # one with a time zone, one without: Blankly compares them its way
        backwards = False
    if backwards:
        raise BacktestArgsError(f"backtest period: the start {start} is not before the end {end}")


def backtest_args(
    start: Optional[str] = None,
    end: Optional[str] = None,
    to: Optional[str] = None,
    initial: Union[str, Iterable[str]] = (),
    extra: Optional[dict] = None,
) -> dict:
    """The keyword arguments of Blankly's ``strategy.backtest()``, built the same way for
    the magics (``--start/--end/--to/--initial`` over ``--args``) and the panel (its fields).

    Empty strings count as not given; a shortcut replaces the same key of ``extra``;
    balances become ``initial_values``. ``{}`` when nothing was given. Raises
    BacktestArgsError (a ValueError) with one line saying what to fix."""
    args = dict(extra or {})
    for key, value in (("start_date", start), ("end_date", end), ("to", to)):
        value = value.strip() if isinstance(value, str) else value
        if value is not None and value != "":
            args[key] = value
    balances = parse_balances(initial or ())
    if balances:
        args["initial_values"] = balances
    check_period(args)
    return args


# ---------------------------------------------------------------- plans, projects, models


def plan_names(client: Any, kind: str = "backtesting") -> list[str]:
    plans = client.plans(PLAN_KINDS.get(kind, kind))
    return list(plans) if isinstance(plans, dict) else []


def choose_plan(client: Any, kind: str, plan: Optional[str] = None) -> str:
    """``plan`` checked against the server's plans of this kind; None -> the server's first plan."""
    names = plan_names(client, kind)
    if not names:
        raise RunError(f"the server at {client.url} offers no {PLAN_KINDS.get(kind, kind)} plans")
    if plan is None:
        return names[0]
    if plan not in names:
        raise RunError(f"unknown {PLAN_KINDS.get(kind, kind)} plan {plan!r}; the server offers: {', '.join(names)}")
    return plan


def _id(record: dict, *keys: str) -> str:
    for key in keys:
        if record.get(key):
            return str(record[key])
    return ""


def _pick(records: list, ref: str, kind: str, id_key: str, where: str, listing: str) -> dict:
    """The record whose id is ``ref``, else the one named ``ref`` exactly, then
    case-insensitively; a RunError listing what there is otherwise. A name several
    records share is never settled by picking one: the error lists their ids."""
    for record in records:
        if ref in (_id(record, id_key), _id(record, "id")):
            return record
    for same in (lambda n: n == ref, lambda n: n.lower() == ref.lower()):
        named = [r for r in records if same(str(r.get("name") or ""))]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            ids = ", ".join(f"{_id(r, id_key, 'id')} (created {when_text(r.get('createdAt'))})" for r in named)
            raise RunError(f"several {kind}s are named {ref!r}{where}: {ids}; pass --{kind} with one of these ids")
    known = ", ".join(f"{r.get('name')} ({_id(r, id_key, 'id')})" for r in records[:20]) or "none"
    raise RunError(f"no {kind} {ref!r}{where}; {listing} {known}")


def _when(value: Any) -> float:
    """A createdAt (epoch seconds, or ISO text from another server) as epoch seconds; 0 if unreadable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    stamp = _iso(value)
    try:
        return stamp.timestamp() if stamp is not None else 0.0
    except (OverflowError, OSError, ValueError):
        return 0.0


def when_text(value: Any) -> str:
    """A createdAt (or any stamp _when reads) as local 'YYYY-MM-DD HH:MM:SS' for messages."""
    seconds = _when(value)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else str(value or "?")


def resolve_project(client: Any, ref: str) -> dict:
    """A project by id, else by exact name (then case-insensitive)."""
    projects = [p for p in client.projects() if isinstance(p, dict)]
    return _pick(projects, ref, "project", "projectId", "", "your projects:")


def resolve_model(client: Any, ref: str, project_id: Optional[str] = None) -> dict:
    """A model by id, else by exact name (then case-insensitive), in ``project_id``
    or, when None, in every project of the user."""
    if project_id:
        project_ids = [project_id]
    else:
        project_ids = [_id(p, "projectId", "id") for p in client.projects() if isinstance(p, dict)]
    models = [m for pid in project_ids for m in client.models(pid) if isinstance(m, dict)]
    where = f" in project {project_id}" if project_id else " in your projects"
    return _pick(models, ref, "model", "modelId", where, "models:")


def model_id_of(model: dict) -> str:
    return _id(model, "modelId", "id")


# ---------------------------------------------------------------- the remembered model


def _side_file(notebook: Optional[Path]) -> Path:
    folder = Path(notebook).parent if notebook else Path.cwd()
    return folder / SIDE_FILE


def _side_key(notebook: Optional[Path], url: str) -> str:
    return f"{url}|{Path(notebook).name if notebook else '(kernel history)'}"


def _read_side(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _section(data: dict, name: str) -> dict:
    section = data.get(name)
    return section if isinstance(section, dict) else {}


def remembered_model(notebook: Optional[Path], url: str) -> Optional[dict]:
    """{"modelId", "projectId", "name"} this notebook last deployed to ``url``, or None."""
    entry = _section(_read_side(_side_file(notebook)), "models").get(_side_key(notebook, url))
    return entry if isinstance(entry, dict) and entry.get("modelId") else None


def remember_model(
    notebook: Optional[Path], url: str, model_id: str, project_id: Optional[str] = None, name: Optional[str] = None
) -> Path:
    """Record the model in the side file (write to a temp file, then os.replace); the
    notebook's unanswered upload, if any, is settled by it."""
    path = _side_file(notebook)
    data = _read_side(path)
    key = _side_key(notebook, url)
    models = _section(data, "models")
    models[key] = {
        "modelId": model_id,
        "projectId": project_id,
        "name": name,
        "updatedAt": time.time(),
    }
    data["models"] = models
    pending = _section(data, "pending")
    if pending.pop(key, None) is not None:
        data["pending"] = pending
    return _write_side(path, data)


def remember_pending(
    notebook: Optional[Path], url: str, name: str, project_id: Optional[str], sha256: str
) -> Path:
    """Record an upload to a NEW model named ``name`` before it is sent: if its answer
    never arrives (an interrupt, a dead kernel), the next deploy can find the model
    it created with find_uploaded_model instead of making a second one."""
    path = _side_file(notebook)
    data = _read_side(path)
    pending = _section(data, "pending")
    pending[_side_key(notebook, url)] = {
        "name": name, "projectId": project_id, "sha256": sha256, "sentAt": time.time(),
    }
    data["pending"] = pending
    return _write_side(path, data)


def pending_upload(notebook: Optional[Path], url: str) -> Optional[dict]:
    """{"name", "projectId", "sha256", "sentAt"} of this notebook's unanswered upload to a new model, or None."""
    entry = _section(_read_side(_side_file(notebook)), "pending").get(_side_key(notebook, url))
    return entry if isinstance(entry, dict) and entry.get("sha256") and entry.get("name") else None


def find_uploaded_model(client: Any, name: str, sha256: str, project_id: Optional[str] = None) -> Optional[dict]:
    """The model an unanswered upload created: named exactly ``name``, in ``project_id``
    (None: the personal project), holding a version whose zip has this ``sha256``.

    Only that exact upload counts, so a model of the same name made from other cells
    (another notebook, an older strategy) is never taken over. Should several hold it,
    the one whose matching version is newest. The model comes back with that version's
    "versionId"; None when the server holds no such upload."""
    best: Optional[tuple[float, dict]] = None
    for model in client.models(project_id):
        if not isinstance(model, dict) or model.get("name") != name:
            continue
        for version in client.versions(model_id_of(model)):
            if isinstance(version, dict) and version.get("sha256") == sha256:
                when = _when(version.get("createdAt"))
                if best is None or when > best[0]:
                    best = (when, dict(model, versionId=version.get("versionId")))
    return best[1] if best else None


def _write_side(path: Path, data: dict) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=".blankly_magics.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# ---------------------------------------------------------------- uploads


@contextmanager
def zip_on_disk(bundle: Any) -> Iterator[Path]:
    """The bundle written to a temp zip, removed afterwards: uploads stream from
    disk, so the zip is never held in memory twice."""
    fd, name = tempfile.mkstemp(prefix="blankly_model_", suffix=".zip")
    os.close(fd)
    path = Path(name)
    try:
        bundle.write_zip(path)
        yield path
    finally:
        try:
            path.unlink()
        except OSError:
            pass


def _upload_fields(client: Any, bundle: Any, kind: str, plan: Optional[str], python_version: Optional[str],
                   **target: Any) -> dict:
    """What both uploads send: the checked plan, the Python version, the model type, and the target."""
    manifest = getattr(bundle, "manifest", None) or {}
    return dict(
        plan=choose_plan(client, kind, plan),
        python_version=python_version or getattr(bundle, "python_version", None),
        model_type=manifest.get("type") or "strategy",
        **target,
    )


def submit_backtest(
    session: Any,
    bundle: Any,
    *,
    plan: Optional[str] = None,
    name: Optional[str] = None,
    model_id: Optional[str] = None,
    project_id: Optional[str] = None,
    description: str = "",
    backtest_args: Optional[dict] = None,
    python_version: Optional[str] = None,
    progress: Optional[Progress] = None,
    before_upload: Optional[Callable[[str], None]] = None,
) -> dict:
    """Upload the bundle as a new version and queue a backtest: the server's answer
    ({"modelId", "versionId", "backtestId", ...}). ``backtest_args`` None -> blankly.json's.
    ``before_upload(sha256 of the zip)`` runs once the zip is written, just before it is sent."""
    client = session.client
    if backtest_args is None:
        backtest_args = dict((getattr(bundle, "manifest", None) or {}).get("backtest_args") or {})
    fields = _upload_fields(client, bundle, "backtesting", plan, python_version, name=name, model_id=model_id,
                            project_id=project_id, description=description, progress=progress)
    with zip_on_disk(bundle) as path:
        if before_upload is not None:
            before_upload(bundle.sha256)  # known from writing the zip: no second render
        return client.backtest(path, backtest_args=backtest_args, **fields)


def submit_deploy(
    session: Any,
    bundle: Any,
    *,
    plan: Optional[str] = None,
    name: Optional[str] = None,
    model_id: Optional[str] = None,
    project_id: Optional[str] = None,
    description: str = "",
    version_description: str = "",
    python_version: Optional[str] = None,
    progress: Optional[Progress] = None,
    before_upload: Optional[Callable[[str], None]] = None,
) -> DeployResult:
    """Upload the bundle as a new version and run it live (``before_upload`` as for submit_backtest)."""
    client = session.client
    manifest = getattr(bundle, "manifest", None) or {}
    schedule = (manifest.get("screener") or {}).get("schedule") if manifest.get("type") == "screener" else None
    fields = _upload_fields(client, bundle, "live", plan, python_version, name=name, model_id=model_id,
                            project_id=project_id, description=description, progress=progress)
    with zip_on_disk(bundle) as path:
        if before_upload is not None:
            before_upload(bundle.sha256)
        answer = client.deploy(path, version_description=version_description, schedule=schedule, **fields)
    deployed = str(answer.get("modelId") or model_id or "")
    return deployment_result(session, deployed, answer=answer, name=name)


def deployment_result(
    session: Any, model_id: str, *, answer: Optional[dict] = None, name: Optional[str] = None
) -> DeployResult:
    """The live state of a model (after a deploy, ``answer`` carries its version)."""
    client = session.client
    state = client.deployment(model_id)
    return DeployResult.from_api(
        answer or {"modelId": model_id}, state, name=name, fetch_logs=lambda: all_model_logs(client, model_id)
    )


# ---------------------------------------------------------------- logs


def read_log_pages(fetch: Callable[[int], dict]) -> str:
    """A whole log from a paged route: ``fetch(offset)`` -> {"text", "offset", "size"}."""
    parts, offset = [], 0
    for _ in range(10_000):  # a bound, not a loop forever against a confused server
        page = fetch(offset)
        text = page.get("text") or ""
        parts.append(text)
        nxt = int(page.get("offset") or 0)
        if not text or nxt <= offset or nxt >= int(page.get("size") or 0):
            break
        offset = nxt
    return "".join(parts)


def all_backtest_logs(client: Any, backtest_id: str) -> str:
    return read_log_pages(lambda offset: client.backtest_logs(backtest_id, offset=offset))


def all_model_logs(client: Any, model_id: str) -> str:
    return read_log_pages(lambda offset: client.model_logs(model_id, offset=offset))


def _log_tail(client: Any, backtest_id: str) -> str:
    first = client.backtest_logs(backtest_id, offset=0)
    size = int(first.get("size") or 0)
    if size > LOG_TAIL_BYTES and int(first.get("offset") or 0) < size:
        return (client.backtest_logs(backtest_id, offset=size - LOG_TAIL_BYTES).get("text") or "")
    return first.get("text") or ""


# ---------------------------------------------------------------- backtest results


def fetch_backtest(session: Any, backtest_id: str) -> BacktestResult:
    """A backtest's status and, once it completed, its metrics, account values and trades."""
    client = session.client
    payload = client.backtest_result(backtest_id)
    tail = _log_tail(client, backtest_id) if payload.get("status") == "failed" else ""
    return BacktestResult.from_api(
        payload, log_tail=tail, fetch_logs=lambda: all_backtest_logs(client, backtest_id)
    )


QUICK_POLL = 0.1  # seconds between status checks while a backtest is young
QUICK_FOR = 5.0  # seconds: a short backtest (the common case) is seen within QUICK_POLL of its end
SLOW_POLL = 2.0  # the interval the checks of a long backtest grow to


def next_poll(waited: float, last: float, poll: float = 0.5) -> float:
    """Seconds to sleep before the next status check, ``waited`` seconds into the current state,
    the last sleep having been ``last``: QUICK_POLL for the first QUICK_FOR seconds, then ``poll``
    growing x1.25 up to max(SLOW_POLL, poll), so a long backtest costs one request every 2 s."""
    poll = max(0.05, float(poll))
    if waited < QUICK_FOR:
        return min(QUICK_POLL, poll)
    if last < poll:
        return poll
    return min(last * 1.25, max(SLOW_POLL, poll))


def wait_for_backtest(
    session: Any,
    backtest_id: str,
    *,
    on_status: Optional[Callable[[dict], None]] = None,
    poll: float = 0.5,
    timeout: Optional[float] = None,
) -> BacktestResult:
    """Poll until the backtest completes, fails or is cancelled, calling
    ``on_status(status)`` after each poll; then fetch the full result. Past
    ``timeout`` seconds it returns the not-yet-finished result (``.done`` False).

    See next_poll for the pace: quick in the first seconds of each state (queued, running),
    ``poll`` after that, growing to SLOW_POLL."""
    client = session.client
    deadline = None if timeout is None else time.monotonic() + timeout
    delay, state, since = 0.0, None, 0.0
    while True:
        status = client.backtest_status(backtest_id)
        if on_status is not None:
            on_status(status)
        if status.get("status") in TERMINAL_STATES:
            return fetch_backtest(session, backtest_id)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return BacktestResult.from_api(status, fetch_logs=lambda: all_backtest_logs(client, backtest_id))
        if status.get("status") != state:  # queued -> running: its first seconds are polled quickly again
            state, since = status.get("status"), now
        delay = next_poll(now - since, delay, poll)
        time.sleep(delay if deadline is None else min(delay, deadline - now))
