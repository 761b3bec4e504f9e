"""The server's life: graceful shutdown by signal and by ``Server.stop()``, and every way to bind.

Signals and exit codes are only real in a process of its own, so most tests here run the
``dualcorn`` command in a subprocess exactly as a user does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from dualcorn import Config, Server
from tests.helpers import DualcornProcess, child_env, run_dualcorn
from tests.rawhttp import RawClient, get

APP = "tests.apps.coretest_app:app"


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """A bounded wait for another process's output (never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def start_slow_request(port: int, seconds: float) -> tuple[RawClient, threading.Thread, list[Any]]:
    """Send ``GET /slow?seconds`` on its own connection; a thread collects the response."""
    client = RawClient(port, timeout=30)
    client.send(get(f"/slow?{seconds}"))
    result: list[Any] = []

    def read() -> None:
        try:
            result.append(client.read_response())
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return client, thread, result


def idle_keep_alive_connection(port: int) -> RawClient:
    client = RawClient(port, timeout=30)
    client.send(get("/"))
    response = client.read_response()
    assert response.status == 200
    assert response.header(b"connection") is None  # still open, idle
    return client


def exit_code(server: DualcornProcess, timeout: float = 10.0) -> int:
    try:
        return server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dualcorn did not exit within {timeout} s:\n{server.stderr_text()}")


# --- Graceful shutdown ----------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sigterm_lets_the_request_in_flight_finish(loop: str) -> None:
    args = (APP, "--port", "0", "--timeout-keep-alive", "30", "--loop", loop)
    with run_dualcorn(*args) as server:
        idle = idle_keep_alive_connection(server.port or 0)
        slow, reader, result = start_slow_request(server.port or 0, 1.0)
        assert wait_for(lambda: "slow started" in server.stdout_text())
        server.proc.send_signal(signal.SIGTERM)
        # Shutdown never waits on the idle connection: it is closed at once.
        assert idle.is_closed_by_server(timeout=5), "the idle connection was kept open"
        assert exit_code(server) == 0, server.stderr_text()
        reader.join(5)
        [response] = result
        assert not isinstance(response, Exception), server.stderr_text()
        assert response.status == 200
        assert response.body == b"GET /slow"
        assert response.header(b"connection") == b"close"
        out = server.stdout_text()
        # In-flight requests finish before the app's lifespan shutdown runs.
        assert out.index("slow done") < out.index("lifespan shutdown")
        slow.close()
        idle.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port or 0), timeout=2).close()


def test_idle_keep_alive_connection_does_not_delay_exit() -> None:
    with run_dualcorn(APP, "--port", "0", "--timeout-keep-alive", "30") as server:
        idle = idle_keep_alive_connection(server.port or 0)
        server.proc.send_signal(signal.SIGTERM)
        # A wait bound, far below the 30 s keep-alive an idle connection would hold it for.
        assert exit_code(server, timeout=15) == 0, server.stderr_text()
        assert idle.is_closed_by_server(timeout=2)
        idle.close()
        assert "lifespan shutdown" in server.stdout_text()


def test_second_signal_exits_at_once() -> None:
    args = (APP, "--port", "0", "--timeout-graceful-shutdown", "60")
    with run_dualcorn(*args) as server:
        slow, reader, result = start_slow_request(server.port or 0, 60)
        assert wait_for(lambda: "slow started" in server.stdout_text())
        server.proc.send_signal(signal.SIGINT)
        assert wait_for(lambda: "request(s) in flight" in server.stderr_text())
        server.proc.send_signal(signal.SIGINT)
        # Far below the 60 s the request and the grace period would otherwise take.
        exit_code(server, timeout=15)
        reader.join(5)
        assert "slow done" not in server.stdout_text()
        assert isinstance(result[0], EOFError)  # cut off, never answered
        slow.close()


def test_graceful_timeout_cancels_what_is_left() -> None:
    args = (APP, "--port", "0", "--timeout-graceful-shutdown", "0.5")
    with run_dualcorn(*args) as server:
        slow, reader, result = start_slow_request(server.port or 0, 60)
        assert wait_for(lambda: "slow started" in server.stdout_text())
        server.proc.send_signal(signal.SIGTERM)
        assert exit_code(server, timeout=15) == 0, server.stderr_text()
        reader.join(5)
        assert "Cancelling 1 request(s)" in server.stderr_text()
        assert isinstance(result[0], EOFError)  # cut off by the grace period
        assert "lifespan shutdown" in server.stdout_text()
        slow.close()


# --- The Python API -------------------------------------------------------------------------


def test_server_stop_from_another_thread() -> None:
    entered = threading.Event()
    stopped_waiting: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            entered.set()
            await asyncio.sleep(0.5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    server = Server(Config(app=app, port=0, lifespan="off", interface="asgi3"))

    def run() -> None:
        # Server.run would configure logging process-wide; serve() on our own loop does not.
        asyncio.run(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    assert not server.started.is_set()
    thread.start()
    assert server.started.wait(10), "server.started was never set"
    url = server.addresses[0]
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    assert httpx.get(url).text == "done"
    slow, reader, result = start_slow_request(int(url.rsplit(":", 1)[1]), 0)
    assert entered.wait(5)
    server.stop()  # returns at once: thread-safe, non-blocking
    stopped_waiting.append(thread.is_alive())
    thread.join(10)
    assert not thread.is_alive(), "the server did not stop"
    assert stopped_waiting == [True]
    reader.join(5)
    assert result[0].status == 200 and result[0].body == b"done"
    assert not server.started.is_set()
    slow.close()


def test_stop_before_start_returns_promptly() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("never called")

    server = Server(Config(app=app, port=0, lifespan="off", interface="asgi3"))
    server.stop()
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()


# --- Binding --------------------------------------------------------------------------------


def run_to_exit(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dualcorn", *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_address_in_use_exits_3_with_a_plain_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_exit(APP, "--port", str(port), "--lifespan", "off")
    assert result.returncode == 3, result.stderr
    assert f"cannot bind to 127.0.0.1:{port}: the address is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_low_port_as_non_root_says_permission_denied() -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: binding below 1024 is allowed, nothing to refuse")
    result = run_to_exit(APP, "--port", "81", "--lifespan", "off")
    assert result.returncode == 3, result.stderr
    assert "permission denied" in result.stderr
    assert "below 1024" in result.stderr


@pytest.mark.parametrize(("args", "expected"), [((), 0o666), (("--uds-mode", "600"), 0o600)])
def test_unix_domain_socket(tmp_path: Path, args: tuple[str, ...], expected: int) -> None:
    path = str(tmp_path / "dualcorn.sock")
    with run_dualcorn(APP, "--uds", path, *args) as server:
        assert server.address == f"unix:{path}"
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        # uvicorn's 0666 by default, so a proxy running as another user can connect; the
        # directory's permissions are the access control.
        assert stat.S_IMODE(mode) == expected, oct(mode)
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport) as client:
            response = client.get("http://localhost/over-uds")
        assert response.status_code == 200
        assert response.text == "GET /over-uds"
        assert server.stop() == 0
    assert not os.path.exists(path), "the socket file outlived the server"


def test_inherited_file_descriptor() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        fd = sock.fileno()
        with run_dualcorn(APP, "--fd", str(fd), pass_fds=(fd,)) as server:
            assert server.port == port
            response = httpx.get(f"http://127.0.0.1:{port}/via-fd")
            assert response.text == "GET /via-fd"
            assert server.stop() == 0


def test_port_0_logs_the_real_port() -> None:
    with run_dualcorn(APP, "--port", "0") as server:
        assert server.port and server.port > 0
        assert httpx.get(f"{server.url}/p").text == "GET /p"
        assert server.stop() == 0


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_host() -> None:
    with run_dualcorn(APP, "--host", "::1", "--port", "0") as server:
        address = server.address or ""
        assert address.startswith("http://[::1]:"), address
        port = int(address.rsplit(":", 1)[1])
        response = httpx.get(f"http://[::1]:{port}/six")
        assert response.text == "GET /six"
        assert server.stop() == 0
