"""The Ray jobs this server started, as it remembers them across its own restarts.

One small private file per run whose job is (or may be) on the cluster, under
``data_dir/runs/ray/jobs/<run id>.json``: the submission id, the frame marker,
what it runs (``kind``, ``id``; a sweep's point ids). It is written before the job
is submitted (a crash in between leaves a record the cluster does not know: it is
dropped at the next start) and removed once the job has ended and been collected.
A server that stops leaves the records of the jobs it leaves running: the next one
reads them in ``RayExecutor.start`` and hands them to the bookkeeping to adopt.

``server-id`` beside them names this data dir's server in every job's metadata,
so jobs it started and forgot (a record lost with a disk) are recognised too.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ...files import private_dir, read_json, write_json
from .folders import check_id


@dataclass(frozen=True)
class JobRecord:
    run_id: str
    submission_id: str
    marker: str
    kind: str  # "backtest", "live", "screener" or "sweep"
    id: str  # the backtest's or the model's id ("" for a sweep)
    points: list[str] = field(default_factory=list)  # a sweep's backtest ids


class JobRecords:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder) / "jobs"
        self._server_id_file = Path(folder) / "server-id"

    def server_id(self) -> str:
        private_dir(self.folder)
        known = read_json(self._server_id_file)
        if isinstance(known, str) and known:
            return known
        new = uuid.uuid4().hex
        write_json(self._server_id_file, new)
        return new

    def _path(self, run_id: str) -> Path:
        return self.folder / f"{check_id('run id', run_id)}.json"

    def write(self, record: JobRecord) -> None:
        private_dir(self.folder)
        write_json(self._path(record.run_id), asdict(record), fsync=False)

    def read(self, run_id: str) -> Optional[JobRecord]:
        data = read_json(self._path(run_id))
        try:
            return JobRecord(**data) if isinstance(data, dict) else None
        except TypeError:
            return None

    def remove(self, run_id: str, submission_id: str) -> None:
        """Forget the run's record, if it still names that job (a newer start replaced it otherwise)."""
        record = self.read(run_id)
        if record is not None and record.submission_id == submission_id:
            self._path(run_id).unlink(missing_ok=True)

    def all(self) -> list[JobRecord]:
        out = []
        for path in sorted(self.folder.glob("*.json")):
            record = self.read(path.stem)
            if record is None:
                path.unlink(missing_ok=True)
            else:
                out.append(record)
        return out

    def by_submission(self, submission_id: str) -> Optional[JobRecord]:
        return next((r for r in self.all() if r.submission_id == submission_id), None)
