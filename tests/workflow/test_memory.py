"""A notebook remembers its models by the server's identity, so a server on a new port keeps them."""
from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

from blankly_magics import session
from blankly_magics.embedded import stop_local_server
from blankly_magics.workflow import Feedback, Memory, ModelSource, RunRequest, run

from ..fixtures_notebooks import write_notebook

TRIVIAL = ["#| blankly\nprint('model ran', flush=True)\n"]


def test_entries_keyed_by_the_url_are_read_and_move_to_the_identity(tmp_path):
    notebook = tmp_path / "rsi.ipynb"
    Memory(notebook, "http://127.0.0.1:8127").remember_model("m1", None, "rsi")  # as an older version kept it
    known = Memory(notebook, "server:abc", also=("http://127.0.0.1:8127",))
    assert known.model()["modelId"] == "m1"  # the same server, still on that URL
    assert Memory(notebook, "server:abc", also=("http://127.0.0.1:9000",)).model() is None  # not that URL
    known.remember_model("m1", None, "rsi")
    stored = json.loads((tmp_path / ".blankly_magics.json").read_text())
    assert list(stored["models"]) == ["server:abc|rsi.ipynb"]


def test_a_deploy_after_the_local_server_came_back_on_another_port_adds_a_version_to_the_same_model(
        private_home, tmp_path):
    data_dir = tmp_path / "bm"
    notebook = write_notebook(tmp_path / "nb" / "ticker.ipynb", TRIVIAL)
    source = ModelSource(notebook, show_summary=False)
    try:
        first = session.sign_in(data_dir=data_dir)
        made = run(first, RunRequest(kind="live", notebook=notebook), source, Feedback())
        port = urlsplit(first.url).port
        session.sign_out(revoke=False)
        assert stop_local_server(data_dir) is True

        with socket.socket() as squatter:  # the old port is taken: the server comes back on another
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen(1)
            again = session.sign_in(data_dir=data_dir)
        assert urlsplit(again.url).port != port
        said: list[str] = []
        added = run(again, RunRequest(kind="live", notebook=notebook), source, Feedback(note=said.append))
        assert added.model_id == made.model_id, said
        assert f"Uploading to model ticker ({made.model_id}) on {again.url} for a deploy..." in said
        assert [m["name"] for m in again.client.models()] == ["ticker"]
        assert len(again.client.versions(made.model_id)) == 2
    finally:
        session.sign_out(revoke=False)
        stop_local_server(data_dir)
