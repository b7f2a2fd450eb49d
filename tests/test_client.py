"""DeploymentClient against real HTTP: scripted loopback servers for faults, our server for the rest."""
from __future__ import annotations

import json
import socket
import struct
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

import pytest
from requests_toolbelt.multipart.decoder import MultipartDecoder

from blankly_magics.client import DeploymentClient, DeploymentError, normalize_url

pytestmark = pytest.mark.usefixtures("private_home")  # tests/fixtures_home.py



REFRESH = "rt-SECRET-refresh-0123456789"
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
    "<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n"
)


# ---- a scripted server: real sockets, answers chosen by the test -------------------------

Answer = tuple  # (status, content_type, body) or ("reset", bytes_to_read_first)


class Scripted:
    """An HTTP server on 127.0.0.1 whose answers come from ``script(request)``; it keeps every request."""

    def __init__(self, script: Callable[["Seen"], Answer]) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner._handle(self)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        request = Seen(handler.command, handler.path.split("?")[0], dict(handler.headers), b"")
        request.query = parse_qs(urlsplit(handler.path).query)
        with self.lock:
            request.count = sum(1 for s in self.seen if (s.method, s.path) == (request.method, request.path)) + 1
        answer = self.script(request)
        if answer[0] == "reset":  # read a little of the body, then drop the connection hard
            handler.rfile.read(min(length, answer[1]))
            with self.lock:
                self.seen.append(request)
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            return
        request.body = handler.rfile.read(length) if length else b""
        with self.lock:
            self.seen.append(request)
        status, content_type, body = answer[:3]
        extra = answer[3] if len(answer) > 3 else {}
        data = body.encode() if isinstance(body, str) else body
        handler.send_response(status)
        if content_type:
            handler.send_header("Content-Type", content_type)
        for key, value in extra.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def count(self, method: str, path: str) -> int:
        return sum(1 for s in self.seen if (s.method, s.path) == (method, path))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Seen:
    def __init__(self, method: str, path: str, headers: dict, body: bytes) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.query: dict[str, list[str]] = {}
        self.count = 0


def js(status: int, value: object, headers: Optional[dict] = None) -> Answer:
    return (status, "application/json", json.dumps(value), headers or {})


def token_answer(request: Seen) -> Answer:
    return js(200, {"idToken": f"id-{request.count}", "expiresIn": 3600, "data": {"user_id": "u1", "name": "Ann"}})


@pytest.fixture
def scripted():
    servers: list[Scripted] = []

    def start(routes: dict[tuple[str, str], Callable[[Seen], Answer]]) -> Scripted:
        def script(request: Seen) -> Answer:
            if (request.method, request.path) == ("POST", "/auth/token"):
                return routes.get(("POST", "/auth/token"), token_answer)(request)
            route = routes.get((request.method, request.path))
            return route(request) if route else js(404, {"error": f"no route {request.path}"})

        server = Scripted(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def fast_client(url: str, **kwargs) -> DeploymentClient:
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("backoff", 0.01)
    return DeploymentClient(url, REFRESH, **kwargs)


def make_zip(path: Path, payload: bytes = b"") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model/blankly.json", json.dumps({"main_script": "./bot.py", "python_version": "3.11"}))
        zf.writestr("model/bot.py", "print('hi')\n")
        zf.writestr("model/requirements.txt", "blankly\n")
        if payload:
            zf.writestr("model/data.bin", payload, compress_type=zipfile.ZIP_STORED)
    return path


# ---- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://example.com", "localhost:8000", "deploy.blankly.finance", "", "http://"])
def test_a_url_that_is_not_http_is_refused_with_the_fix(url):
    with pytest.raises(DeploymentError) as caught:
        DeploymentClient(url)
    message = str(caught.value)
    assert repr(url) in message and "http://" in message and "https://" in message


def test_urls_are_normalised():
    assert normalize_url(" HTTPS://Deploy.example.com/api/ ") == "https://Deploy.example.com/api"
    assert DeploymentClient("http://127.0.0.1:8000/").url == "http://127.0.0.1:8000"


def test_a_server_that_is_not_running_is_reported_as_such():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = fast_client(f"http://127.0.0.1:{port}")
    with pytest.raises(DeploymentError) as caught:
        client.projects()
    assert str(caught.value).startswith(f"cannot reach the deployment server at http://127.0.0.1:{port}: is it running?")
    assert caught.value.status is None


# ---- answers that are not JSON -----------------------------------------------------------------


def test_an_html_502_is_reported_clearly_after_retrying_the_get(scripted):
    server = scripted({("GET", "/project/list"): lambda r: (502, "text/html", NGINX_502)})
    with pytest.raises(DeploymentError) as caught:
        fast_client(server.url).projects()
    error = caught.value
    assert error.status == 502 and error.route == "/project/list"
    text = str(error)
    assert f"the server at {server.url} answered with something that is not JSON (text/html)" in text
    assert "502 Bad Gateway 502 Bad Gateway nginx/1.24.0" in text and "<" not in text
    assert server.count("GET", "/project/list") == 3  # the first try and two retries


def test_a_get_that_recovers_after_503s_returns_the_answer(scripted):
    def flaky(request: Seen) -> Answer:
        if request.count <= 2:
            return js(503, {"error": "busy"}, {"Retry-After": "0"})
        return js(200, [{"projectId": "u1", "name": "Personal"}])

    server = scripted({("GET", "/project/list"): flaky})
    assert fast_client(server.url).projects() == [{"projectId": "u1", "name": "Personal"}]
    assert server.count("GET", "/project/list") == 3


def test_a_post_answered_502_is_never_retried(scripted):
    server = scripted({("POST", "/project/create"): lambda r: (502, "text/html", NGINX_502)})
    with pytest.raises(DeploymentError) as caught:
        fast_client(server.url).create_project("p")
    assert caught.value.status == 502
    assert server.count("POST", "/project/create") == 1


def test_an_upload_answered_503_is_never_retried_and_keeps_the_retry_hint(scripted, tmp_path):
    server = scripted({("POST", "/model/upload"): lambda r: js(503, {"error": "queue full"}, {"Retry-After": "7"})})
    with pytest.raises(DeploymentError) as caught:
        fast_client(server.url).upload(make_zip(tmp_path / "m.zip"))
    assert str(caught.value) == "queue full (HTTP 503, /model/upload)"
    assert caught.value.retry_after == 7
    assert server.count("POST", "/model/upload") == 1


@pytest.mark.parametrize(
    "answer, shown",
    [
        ((200, None, ""), "(no content type): an empty body"),
        ((200, "text/plain", "garbage{"), "(text/plain): garbage{"),
        ((500, "text/html", "<h1>Internal Server Error</h1>" + "x" * 200), "(text/html): Internal Server Error xxx"),
    ],
)
def test_empty_or_garbage_answers_are_clear_errors(scripted, answer, shown):
    server = scripted({("GET", "/model/status"): lambda r: answer})
    with pytest.raises(DeploymentError) as caught:
        fast_client(server.url).status()
    assert shown in str(caught.value) and "not JSON" in str(caught.value)
    assert len(str(caught.value)) < 220
    expected_tries = 1 if answer[0] < 502 else 3
    assert server.count("GET", "/model/status") == expected_tries


def test_a_json_error_carries_the_servers_message_status_and_route(scripted):
    server = scripted({("GET", "/backtest/status"): lambda r: js(404, {"error": "no such backtest"})})
    with pytest.raises(DeploymentError) as caught:
        fast_client(server.url).backtest_status("b1")
    assert (caught.value.status, caught.value.message, caught.value.route) == (404, "no such backtest", "/backtest/status")
    assert str(caught.value) == "no such backtest (HTTP 404, /backtest/status)"
    assert server.count("GET", "/backtest/status") == 1  # a 404 is an answer, not a fault


def test_network_failing_mid_upload_is_a_clear_error_and_not_retried(scripted, tmp_path):
    server = scripted({("POST", "/model/upload"): lambda r: ("reset", 64 * 1024)})
    zip_path = make_zip(tmp_path / "m.zip", payload=bytes(2 * 1024 * 1024))
    with pytest.raises(DeploymentError) as caught:
        fast_client(server.url).upload(zip_path)
    text = str(caught.value)
    assert text.startswith(f"the upload to {server.url} failed: the connection broke")
    assert "safe to try again" in text
    assert server.count("POST", "/model/upload") == 1


# ---- tokens: the header, a 401, and secrecy -----------------------------------------------------


def test_the_id_token_travels_in_the_token_header(scripted):
    server = scripted({("GET", "/project/teams"): lambda r: js(200, [])})
    client = fast_client(server.url)
    assert client.login() == "u1"
    assert client.teams() == []
    teams = [s for s in server.seen if s.path == "/project/teams"][0]
    assert teams.headers.get("token") == "id-1"
    exchange = [s for s in server.seen if s.path == "/auth/token"][0]
    assert exchange.body == f"refreshToken={REFRESH}".encode()
    assert "token" not in exchange.headers


def test_a_401_exchanges_once_replays_once_then_says_sign_in_again(scripted):
    server = scripted({("GET", "/project/list"): lambda r: js(401, {"error": "idToken expired"})})
    client = fast_client(server.url)
    client.login()
    with pytest.raises(DeploymentError) as caught:
        client.projects()
    assert caught.value.status == 401
    assert "sign in again with %blankly_login" in str(caught.value)
    assert server.count("POST", "/auth/token") == 2  # the login and one re-exchange
    sent = [s.headers.get("token") for s in server.seen if s.path == "/project/list"]
    assert sent == ["id-1", "id-2"]  # the replay carried the new idToken


def test_a_refused_refresh_token_says_sign_in_again(scripted):
    server = scripted({("POST", "/auth/token"): lambda r: js(401, {"error": "refresh token revoked"})})
    with pytest.raises(DeploymentError) as caught:
        fast_client(server.url).login()
    assert "refused the refresh token (refresh token revoked): sign in again with %blankly_login" in str(caught.value)


def test_an_upload_refused_with_401_is_sent_again_in_full_from_the_file(scripted, tmp_path):
    def upload(request: Seen) -> Answer:
        if request.count == 1:
            return js(401, {"error": "idToken expired"})
        return js(200, {"status": "success", "modelId": "m1", "versionId": "v1"})

    server = scripted({("POST", "/model/upload"): upload})
    zip_path = make_zip(tmp_path / "m.zip", payload=b"\x01" * 300_000)
    calls: list[tuple[int, int]] = []
    answer = fast_client(server.url).upload(zip_path, progress=lambda sent, total: calls.append((sent, total)))
    assert answer["versionId"] == "v1"
    uploads = [s for s in server.seen if s.path == "/model/upload"]
    assert len(uploads) == 2
    assert [_form_parts(s)["model"][0] for s in uploads] == [zip_path.read_bytes()] * 2
    assert [s.headers["token"] for s in uploads] == ["id-1", "id-2"]
    total = calls[-1][1]
    assert total == len(uploads[1].body) and calls.count((total, total)) == 2 and calls.count((0, total)) == 2


def test_tokens_never_show_in_repr_str_or_errors(scripted):
    def echo(request: Seen) -> Answer:  # a careless server that echoes what it got
        return js(400, {"error": f"bad token {request.headers.get('token')} from {REFRESH}"})

    server = scripted({("GET", "/model/status"): echo})
    client = fast_client(server.url)
    client.login()
    with pytest.raises(DeploymentError) as caught:
        client.status()
    shown = " ".join([repr(client), str(client), str(caught.value), repr(caught.value), repr(vars(client))])
    assert REFRESH not in shown and "id-1" not in shown
    assert repr(client) == f"DeploymentClient(url='{server.url}', user='u1')"


# ---- what the uploads send: the reference client's fields -------------------------------------


def _form_parts(request: Seen) -> dict:
    decoded = MultipartDecoder(request.body, request.headers["Content-Type"])
    parts = {}
    for part in decoded.parts:
        disposition = part.headers[b"Content-Disposition"].decode()
        name = disposition.split('name="')[1].split('"')[0]
        parts[name] = (part.content, disposition)
    return parts


def test_backtest_sends_the_reference_clients_fields(scripted, tmp_path):
    server = scripted({("POST", "/model/backtest"): lambda r: js(200, {"status": "success", "backtestId": "b1"})})
    zip_path = make_zip(tmp_path / "strategy.zip")
    client = fast_client(server.url)
    client.backtest(zip_path, plan="small", backtest_args={"to": "1y", "initial_values": {"USD": 10000}},
                    name="RSI", description="try 20", python_version="3.11")
    request = [s for s in server.seen if s.path == "/model/backtest"][0]
    assert request.headers["token"] == "id-1"
    parts = _form_parts(request)
    fields = {k: v[0].decode() for k, v in parts.items() if k != "model"}
    assert fields == {
        "name": "RSI", "projectId": "u1", "createNew": "True", "pythonVersion": "3.11", "type": "strategy",
        "plan": "small", "backtestArgs": '{"to": "1y", "initial_values": {"USD": 10000}}',
        "backtestDescription": "try 20",
    }
    assert parts["model"][0] == zip_path.read_bytes()
    assert 'filename="strategy.zip"' in parts["model"][1]


def test_deploy_to_an_existing_model_sends_its_ids_and_no_create_new(scripted, tmp_path):
    server = scripted({("POST", "/model/deploy"): lambda r: js(200, {"status": "success", "versionId": "v2"})})
    client = fast_client(server.url)
    client.deploy(make_zip(tmp_path / "m.zip"), plan="nano", model_id="m1", project_id="p1",
                  description="RSI bot", version_description="buy lower", schedule=None)
    fields = {k: v[0].decode() for k, v in _form_parts([s for s in server.seen if s.path == "/model/deploy"][0]).items()
              if k != "model"}
    assert fields["modelId"] == "m1" and fields["projectId"] == "p1" and fields["createNew"] == "False"
    assert fields["generalDescription"] == "RSI bot" and fields["versionDescription"] == "buy lower"
    assert "schedule" not in fields and "name" not in fields


def test_backtesting_an_uploaded_version_posts_json_with_an_object(scripted):
    server = scripted({("POST", "/model/backtestUploadedModel"): lambda r: js(200, {"backtestId": "b2"})})
    fast_client(server.url).backtest_uploaded("m1", "v1", {"to": "1y"}, description="again")
    request = [s for s in server.seen if s.path == "/model/backtestUploadedModel"][0]
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "projectId": "u1", "modelId": "m1", "versionId": "v1", "backtestArgs": {"to": "1y"},
        "backtestDescription": "again",
    }


def test_a_missing_zip_is_named(scripted, tmp_path):
    server = scripted({})
    with pytest.raises(DeploymentError, match="cannot read the zip .*nope.zip"):
        fast_client(server.url).upload(tmp_path / "nope.zip")
    assert server.count("POST", "/model/upload") == 0


# ---- against the real server -------------------------------------------------------------------


def test_a_round_trip_on_the_real_server(local_server, tmp_path):
    client = DeploymentClient(local_server.url, local_server.refresh_token("alice"))
    user = client.login()
    assert user == local_server.user_id("alice")
    assert [p["projectId"] for p in client.projects()] == [user]
    project = client.create_project("RSI models", "buy < 30")
    model = client.create_model("RSI", project_id=project["projectId"])
    assert model["modelId"] == model["id"] and model["projectId"] == project["projectId"]
    assert [m["modelId"] for m in client.models(project["projectId"])] == [model["modelId"]]
    assert client.plans("backtesting") and client.plans("live")
    assert isinstance(client.teams(), list)

    zip_path = make_zip(tmp_path / "m.zip", payload=b"\x07" * 2_000_000)
    calls: list[tuple[int, int]] = []
    stored = client.upload(zip_path, model_id=model["modelId"], project_id=project["projectId"],
                           version_description="first", progress=lambda s, t: calls.append((s, t)))
    assert stored["status"] == "success" and stored["modelId"] == model["modelId"]
    total = calls[-1][1]
    assert calls[0] == (0, total) and calls[-1] == (total, total) > (zip_path.stat().st_size, 0)
    assert [s for s, _ in calls] == sorted(s for s, _ in calls)
    versions = client.versions(model["modelId"])
    assert [(v["versionId"], v["size"], v["description"]) for v in versions] == [
        (stored["versionId"], zip_path.stat().st_size, "first")
    ]
    details = client.model_details(model["modelId"], project["projectId"])
    assert [v["versionId"] for v in details["versions"]] == [stored["versionId"]]

    with pytest.raises(DeploymentError) as caught:
        client.backtest_status("no-such-backtest")
    assert caught.value.status == 404 and caught.value.route == "/backtest/status"
    with pytest.raises(DeploymentError) as caught:
        client.backtest(zip_path, plan="no-such-plan", backtest_args={"to": "1y"}, model_id=model["modelId"],
                        project_id=project["projectId"])
    assert caught.value.status == 400 and "no-such-plan" in caught.value.message
    assert len(client.versions(model["modelId"])) == 1  # the refused upload stored nothing

    assert client.delete(model["modelId"])["status"] == "success"
    assert client.models(project["projectId"]) == []


def test_an_expired_id_token_is_exchanged_again_on_the_real_server(server_factory):
    import time

    server = server_factory(args=["--token-ttl", "1"])
    refresh = server.refresh_token("alice")
    client = DeploymentClient(server.url, refresh)
    client.login()
    client.projects()
    time.sleep(2.5)  # past the idToken's life: not a timing assertion, the token must be stale
    assert client.projects()[0]["projectId"] == client.user_id  # exchanged again, no error

    other = DeploymentClient(server.url, refresh)
    other.login()
    other.logout()  # revokes the refresh token both clients hold
    time.sleep(2.5)
    with pytest.raises(DeploymentError) as caught:
        client.projects()
    text = str(caught.value)
    assert caught.value.status == 401 and "sign in again with %blankly_login" in text
    assert refresh not in text


def test_uploading_a_large_zip_keeps_memory_flat(local_server, tmp_path):
    import os

    import psutil

    zip_path = make_zip(tmp_path / "big.zip", payload=os.urandom(50 * 1024 * 1024))
    client = DeploymentClient(local_server.url, local_server.refresh_token("alice"))
    client.login()
    process = psutil.Process()
    peak = [0]

    def progress(sent: int, total: int) -> None:  # sampled while the body streams
        peak[0] = max(peak[0], process.memory_info().rss)

    before = process.memory_info().rss
    answer = client.upload(zip_path, progress=progress)
    assert answer["status"] == "success"
    growth = max(peak[0], process.memory_info().rss) - before
    assert growth < 8 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MB for a 50 MB upload"
