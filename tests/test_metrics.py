"""``--metrics-port`` end to end: the real command, real clients, scraped with a real parser.

Every test starts ``python -m dualcorn`` on port 0 with ``--metrics-port 0``, sends a known mix
of requests (statuses 200, 404 and 500, a request body, a made-up method, a WebSocket
session), scrapes ``/metrics`` and parses it with ``prometheus_client``'s own text parser, then
checks the counts against what was sent, exactly.  With ``--workers 2`` every request has its
own connection (``Connection: close``) and the workers share the port with ``SO_REUSEPORT``,
so both workers serve and the supervisor must add them up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.helpers import REPO_ROOT, DualcornProcess
from tests.supervising import children, is_alive, start_dualcorn, wait_for

ASGI_APP = """
import os

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message.get("text") or ""})
        await receive()  # until the client closes
        return
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("boom on purpose")
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if path == "/ok":
        status, body = 200, b"ok %d" % os.getpid()
    elif path == "/echo":
        status = 200
    else:
        status, body = 404, b"no such page"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
"""

WSGI_APP = """
import os, time
from pathlib import Path

def app(environ, start_response):
    path = environ["PATH_INFO"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    if path == "/boom":
        raise RuntimeError("boom on purpose")
    if path == "/slow":
        deadline = time.monotonic() + 30
        while not Path("release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        body = b"released"
    elif path == "/ok":
        body = b"ok %d" % os.getpid()
    status = "200 OK" if path in ("/ok", "/echo", "/slow") else "404 Not Found"
    if status.startswith("404"):
        body = b"no such page"
    start_response(status, [("Content-Type", "text/plain")])
    return [body]
"""

METRICS_LINE = re.compile(r"Metrics on http://127\.0\.0\.1:(\d+)/metrics")
CLOSE = {"connection": "close"}
BASE = ("app:app", "--port", "0", "--metrics-port", "0", "--no-access-log")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def app_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    kind = getattr(request, "param", "asgi")
    (tmp_path / "app.py").write_text(ASGI_APP if kind == "asgi" else WSGI_APP)
    return tmp_path


def metrics_url(server: DualcornProcess) -> str:
    wait_for(lambda: METRICS_LINE.search(server.stderr_text()), 10.0, "the metrics line")
    match = METRICS_LINE.search(server.stderr_text())
    assert match is not None
    return f"http://127.0.0.1:{match.group(1)}/metrics"


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10.0)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def settled(url: str, **expected: float) -> Samples:
    """Scrape until the gauges read ``expected``: in a supervised process they are refreshed
    once a second, and a closed connection is noticed by the server a moment after."""
    found: list[Samples] = []

    def check() -> bool:
        found[:] = [scrape(url)]
        return all(total(found[0], name) == want for name, want in expected.items())

    try:
        wait_for(check, 15.0, f"gauges {expected}")
    except AssertionError as exc:
        seen = {name: total(found[0], name) for name in expected} if found else None
        raise AssertionError(f"{exc}; last seen {seen}") from None
    return found[0]


def send_mix(base: str, *, websocket: bool) -> tuple[dict[tuple[str, str], int], int, set[str]]:
    """The known mix; returns counts by (method, status), response body bytes, pids seen."""
    counts: dict[tuple[str, str], int] = {}
    body_out = 0
    pids = set()
    with httpx.Client(base_url=base, headers=CLOSE, timeout=10.0) as client:
        plan = [("GET", "/ok", None)] * 20 + [("GET", "/missing", None)] * 3
        plan += [("GET", "/boom", None)] * 2 + [("POST", "/echo", b"x" * 1000)] * 4
        plan += [("PROPFIND", "/ok", None)]  # WebDAV: recorded as OTHER
        for method, path, content in plan:
            response = client.request(method, path, content=content)
            label = "OTHER" if method == "PROPFIND" else method
            key = (label, str(response.status_code))
            counts[key] = counts.get(key, 0) + 1
            body_out += len(response.content)
            if path == "/ok":
                pids.add(response.text.split()[1])
    assert counts == {("GET", "200"): 20, ("GET", "404"): 3, ("GET", "500"): 2,
                      ("POST", "200"): 4, ("OTHER", "200"): 1}  # fmt: skip
    if websocket:
        ws_url = base.replace("http://", "ws://") + "/ws"
        with connect(ws_url, open_timeout=10, close_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
    return counts, body_out, pids


def check_mix(url: str, counts: dict[tuple[str, str], int], body_out: int, ws: bool) -> Samples:
    samples = settled(url, dualcorn_http_requests_in_flight=0, dualcorn_connections_open=0,
                      dualcorn_websocket_sessions_open=0)  # fmt: skip
    for (method, status), count in counts.items():
        got = value(samples, "dualcorn_http_requests_total", method=method, status=status,
                    mount="")  # fmt: skip
        assert got == count, (method, status, samples)
    assert total(samples, "dualcorn_http_requests_total") == sum(counts.values())
    requests = sum(counts.values())
    assert value(samples, "dualcorn_http_request_duration_seconds_count", mount="") == requests
    assert value(samples, "dualcorn_http_request_duration_seconds_bucket", mount="",
                 le="+Inf") == requests  # fmt: skip
    assert value(samples, "dualcorn_http_request_body_bytes_total", mount="") == 4000
    assert value(samples, "dualcorn_http_response_body_bytes_total", mount="") == body_out
    sessions = value(samples, "dualcorn_websocket_sessions_total", status="101", mount="")
    assert sessions == (1 if ws else 0)
    return samples


@pytest.mark.parametrize("app_dir", ["asgi", "wsgi"], indirect=True)
def test_single_process_counts_match_the_requests_sent(app_dir: Path) -> None:
    asgi = app_dir.joinpath("app.py").read_text() == ASGI_APP
    with start_dualcorn(*BASE, "--threads", "3", cwd=app_dir) as server:
        url = metrics_url(server)
        counts, body_out, pids = send_mix(server.url, websocket=asgi)
        samples = check_mix(url, counts, body_out, asgi)
        assert pids == {str(server.proc.pid)}
        if not asgi:
            assert value(samples, "dualcorn_wsgi_threads", mount="") == 3
            assert value(samples, "dualcorn_wsgi_threads_busy", mount="") == 0
            assert value(samples, "dualcorn_wsgi_requests_waiting", mount="") == 0


@pytest.mark.parametrize("app_dir", ["asgi", "wsgi"], indirect=True)
def test_two_workers_are_added_up_by_the_supervisor(app_dir: Path) -> None:
    asgi = app_dir.joinpath("app.py").read_text() == ASGI_APP
    args = (*BASE, "--workers", "2", "--reuse-port", "--threads", "3")
    with start_dualcorn(*args, cwd=app_dir) as server:
        url = metrics_url(server)
        settled(url, dualcorn_workers=2)
        counts, body_out, pids = send_mix(server.url, websocket=asgi)
        assert len(pids) == 2, f"one worker served everything: {pids}"
        samples = check_mix(url, counts, body_out, asgi)
        assert value(samples, "dualcorn_workers_wanted") == 2
        assert value(samples, "dualcorn_worker_restarts_total") == 0
        if not asgi:
            assert value(samples, "dualcorn_wsgi_threads", mount="") == 6  # 3 per worker

        # A worker dies: its counts stay in the totals, the supervisor counts the restart.
        victim = int(sorted(pids)[0])
        assert victim in children(server.proc.pid)
        environ = Path(f"/proc/{victim}/environ").read_bytes().split(b"\0")
        shared = [
            v.split(b"=", 1)[1] for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")
        ]
        directory = Path(shared[0].decode())
        assert directory.is_dir()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not is_alive(victim), 10.0, "the killed worker to go")
        samples = settled(url, dualcorn_workers=2, dualcorn_worker_restarts_total=1)
        assert total(samples, "dualcorn_http_requests_total") == sum(counts.values())
        if not asgi:  # the dead worker's gauges are gone, its replacement's are there
            settled(url, dualcorn_wsgi_threads=6)
        # A graceful stop removes the supervisor's directory.
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        assert not directory.exists()


@pytest.mark.parametrize("app_dir", ["wsgi"], indirect=True)
def test_wsgi_threads_busy_and_requests_waiting(app_dir: Path) -> None:
    with start_dualcorn(*BASE, "--threads", "1", cwd=app_dir) as server:
        url = metrics_url(server)
        results: list[int] = []

        def slow() -> None:
            results.append(httpx.get(server.url + "/slow", timeout=30.0).status_code)

        clients = [threading.Thread(target=slow) for _ in range(2)]
        for client in clients:
            client.start()
        try:
            samples = settled(url, dualcorn_wsgi_threads_busy=1,
                              dualcorn_wsgi_requests_waiting=1)  # fmt: skip
            assert value(samples, "dualcorn_http_requests_in_flight") == 2
            assert value(samples, "dualcorn_wsgi_threads", mount="") == 1
        finally:
            (app_dir / "release").write_text("")
            for client in clients:
                client.join(30.0)
        assert results == [200, 200]
        settled(url, dualcorn_wsgi_threads_busy=0, dualcorn_wsgi_requests_waiting=0,
                dualcorn_http_requests_in_flight=0)  # fmt: skip


def test_open_websocket_and_connection_gauges(app_dir: Path) -> None:
    with start_dualcorn(*BASE, cwd=app_dir) as server:
        url = metrics_url(server)
        with connect(server.url.replace("http://", "ws://") + "/ws", open_timeout=10) as ws:
            settled(url, dualcorn_websocket_sessions_open=1, dualcorn_connections_open=1)
            ws.send("hi")
            assert ws.recv(timeout=10) == "hi"
        samples = settled(url, dualcorn_websocket_sessions_open=0, dualcorn_connections_open=0)
        assert value(samples, "dualcorn_websocket_sessions_total", status="101", mount="") == 1


def test_metrics_have_their_own_port(app_dir: Path) -> None:
    with start_dualcorn(*BASE, cwd=app_dir) as server:
        url = metrics_url(server)
        assert not url.startswith(server.url + "/")
        # The app's port never serves the metrics: /metrics there is the app's own 404.
        response = httpx.get(server.url + "/metrics", timeout=10.0)
        assert response.status_code == 404
        assert response.text == "no such page"
        # The metrics port serves nothing else.
        root = url.rsplit("/", 1)[0]
        assert httpx.get(root + "/", timeout=10.0).status_code == 404
        post = httpx.post(url, timeout=10.0)
        assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
        head = httpx.head(url, timeout=10.0)
        assert head.status_code == 200 and head.content == b""
        samples = scrape(url)
        # Only the one app request above; the metrics port's own exchanges are not counted.
        assert total(samples, "dualcorn_http_requests_total") == 1


def test_metrics_port_in_use_stops_the_server(app_dir: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for extra in ((), ("--workers", "2")):
            result = run_cli(app_dir, "app:app", "--port", "0", "--metrics-port", str(port),
                             *extra)  # fmt: skip
            assert result.returncode == 3, result.stderr
            assert f"--metrics-port {port}" in result.stderr.strip().splitlines()[-1]


def test_metrics_port_same_as_app_port_is_refused(app_dir: Path) -> None:
    result = run_cli(app_dir, "app:app", "--port", "8765", "--metrics-port", "8765")
    assert result.returncode == 2
    assert "metrics_port must differ from port" in result.stderr


@pytest.mark.parametrize("extra", [(), ("--workers", "2")])
def test_without_prometheus_client_start_up_fails_naming_the_extra(
    app_dir: Path, extra: tuple[str, ...]
) -> None:
    # The import fails as it does where the package is not installed.
    hide = "import sys; sys.modules['prometheus_client'] = None; "
    result = run_cli(app_dir, "app:app", "--port", "0", "--metrics-port", "0", *extra,
                     prelude=hide)  # fmt: skip
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "dualcorn[metrics]" in lines[0] and "--metrics-port" in lines[0]


def run_cli(cwd: Path, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"}
    code = prelude + "from dualcorn.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30)  # fmt: skip


RELOAD_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"VERSION"})
"""


def test_reload_supervisor_keeps_counting_across_reloads(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    (tmp_path / "app.py").write_text(RELOAD_APP.replace("VERSION", "v1"))
    args = ("app:app", "--reload", "--port", "0", "--metrics-port", "0", "--no-access-log")
    with start_dualcorn(*args, cwd=tmp_path) as server:
        url = metrics_url(server)
        sent = 0
        with httpx.Client(base_url=server.url, headers=CLOSE, timeout=10.0) as client:

            def get() -> str:
                nonlocal sent
                response = client.get("/")
                sent += 1
                assert response.status_code == 200
                return response.text

            assert [get() for _ in range(3)] == ["v1"] * 3
            (tmp_path / "app.py").write_text(RELOAD_APP.replace("VERSION", "v2"))
            wait_for(lambda: get() == "v2", 30.0, "the reloaded code")
        # The requests the old process served are in the total, whether it has exited or not.
        samples = settled(url, dualcorn_connections_open=0, dualcorn_http_requests_in_flight=0)
        assert total(samples, "dualcorn_http_requests_total") == sent
        assert value(samples, "dualcorn_http_requests_total", method="GET", status="200",
                     mount="") == sent  # fmt: skip
        server.proc.send_signal(signal.SIGTERM)  # a graceful stop removes the directory
        assert server.proc.wait(30) == 0


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` to the metrics port; everything it answers until it closes."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=15.0) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_metrics_listener_refuses_bad_requests_cleanly(app_dir: Path) -> None:
    with start_dualcorn(*BASE, cwd=app_dir) as server:
        port = int(metrics_url(server).split(":")[2].split("/")[0])
        assert exchange(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        huge = b"GET /metrics HTTP/1.1\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n"
        assert exchange(port, huge).startswith(b"HTTP/1.1 431 ")
        # A head cut short by the client: 400, and the connection closes.
        assert exchange(port, b"GET /metrics HTTP/1.1\r\n").startswith(b"HTTP/1.1 400 ")
        assert exchange(port, b"") == b""
        answer = exchange(port, b"GET /metrics?x=1 HTTP/1.1\r\nhost: x\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"connection: close" in head
        assert b"# TYPE dualcorn_http_requests_total counter" in body
        assert server.proc.poll() is None
        assert "Traceback" not in server.stderr_text()


def test_everything_else_works_without_prometheus_client(tmp_path: Path) -> None:
    # Supervisors and the server import dualcorn.metrics lazily: without the package (and
    # without --metrics-port) nothing asks for it.
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import dualcorn.cli, dualcorn.server, dualcorn.main\n"
        "import dualcorn.supervisors.workers, dualcorn.supervisors.reload, dualcorn.metrics\n"
        "from dualcorn.cli import config_from_args\n"
        "assert config_from_args(['app:app', '--workers', '2']).metrics_port is None\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.stdout == "ok\n", result.stderr


def test_config_checks_the_metrics_options() -> None:
    from dualcorn.config import Config
    from dualcorn.errors import ConfigError

    assert Config(app="a:b").metrics_port is None
    assert Config(app="a:b", metrics_port=9100).metrics_host == "127.0.0.1"
    with pytest.raises(ConfigError, match="metrics_port must be between 0 and 65535"):
        Config(app="a:b", metrics_port=65536)
    with pytest.raises(ConfigError, match="metrics_port must differ from port"):
        Config(app="a:b", port=9100, metrics_port=9100)
    with pytest.raises(ConfigError, match="metrics_host"):
        Config(app="a:b", metrics_port=9100, metrics_host="")
    # A Unix socket or --bind leaves the port number free for the metrics.
    assert Config(app="a:b", uds="/tmp/x.sock", port=9100, metrics_port=9100).metrics_port
