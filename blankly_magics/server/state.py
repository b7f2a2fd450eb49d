"""What the routes share while the server runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import uploads
from .identity import server_id
from .config import ServerConfig
from .keystore import KeyStore
from .longpoll import StatusWaits
from .runner import Runner
from .store import TMP_DIR, Store
from .tokens import IdTokens


@dataclass
class Server:
    """What the routes share: settings, the database, the runner, the token signer,
    the thread that writes uploads to disk, the users' exchange keys, and the requests
    waiting for a status to change."""

    config: ServerConfig
    store: Store
    runner: Runner
    id_tokens: IdTokens
    writer: uploads.Writer
    keys: KeyStore
    waits: StatusWaits = field(default_factory=StatusWaits)
    tmp_dir: Path = field(init=False)  # where uploads are received and written
    server_id: str = field(init=False)  # the data dir's stable id (identity.py), reported to clients

    def __post_init__(self) -> None:
        self.tmp_dir = self.config.data_dir / TMP_DIR
        self.server_id = server_id(self.config.data_dir)
