"""The server's identity: one id per data dir, the same on every start and port, told to clients."""
from __future__ import annotations

import stat

import requests


def test_the_server_id_is_kept_in_the_data_dir_and_reported_on_every_port(server_factory):
    server = server_factory()
    first_url, health = server.url, server.health()
    server_id = health["serverId"]
    assert len(server_id) == 32 and int(server_id, 16) >= 0
    path = server.data_dir / "server-id"
    assert path.read_text().strip() == server_id and stat.S_IMODE(path.stat().st_mode) == 0o600
    answer = requests.post(f"{server.url}/auth/token", data={"refreshToken": server.refresh_token("alice")},
                           timeout=30).json()
    assert answer["data"]["server_id"] == server_id

    server.restart()  # --port 0: another port
    assert server.url != first_url
    assert server.health()["serverId"] == server_id

    other = server_factory()  # another data dir: another server
    assert other.health()["serverId"] != server_id
