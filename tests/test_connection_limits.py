"""Connection counts, file descriptors and lifespan timeouts, on both loops.

``--limit-connections`` closes connections past the limit at once and says so at most once a
second; WebSocket sessions count toward ``--limit-concurrency``; a server out of descriptors
pauses accepting instead of spinning (CPython's accept loop logs a traceback per try), and
serves again once descriptors are free; a lifespan startup that hangs exits with status 3.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from dualcorn.listener import Throttled
from tests.conftest import LOOPS
from tests.helpers import DualcornProcess, child_env
from tests.rawhttp import RawClient, get

Scope = dict[str, Any]
Serve = Callable[..., Any]


async def hello(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """A bounded wait for state another thread changes (never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def served(port: int) -> bool:
    try:
        with RawClient(port, timeout=5) as client:
            client.send(get())
            return client.read_response().status == 200
    except (OSError, EOFError):
        return False


# --- The once-a-second warning ------------------------------------------------------------


async def test_a_throttled_warning_counts_every_event_in_few_lines() -> None:
    lines: list[int] = []
    warn = Throttled("%d events", lambda message, count: lines.append(count))
    for _ in range(1000):
        warn()
    assert lines == [1]  # the first at once; the rest are counted, not logged one by one
    await asyncio.sleep(1.5)  # past the second: the flush timer has run
    assert lines == [1, 999]


# --- --limit-connections ----------------------------------------------------------------------


def test_connections_past_the_limit_are_closed_at_once(serve: Serve, errors: Any) -> None:
    with serve(hello, limit_connections=3) as server:
        held = [RawClient(server.port) for _ in range(3)]
        try:
            for client in held:  # an answered request proves the server counts it
                client.send(get())
                assert client.read_response().status == 200
            refused = [RawClient(server.port) for _ in range(20)]
            for client in refused:
                assert client.is_closed_by_server(timeout=10)
                assert client.buf == b""
                client.close()
            for client in held:  # the connections within the limit are still served
                client.send(get())
                assert client.read_response().status == 200
        finally:
            held[0].close()
        # One connection closed: a new one is served again.
        assert wait_for(lambda: served(server.port))
        for client in held[1:]:
            client.close()

        def counted() -> list[int]:
            lines = [r.getMessage() for r in errors.records if "--limit-connections" in r.message]
            return [int(re.search(r"closed (\d+)", line).group(1)) for line in lines]  # type: ignore[union-attr]

        # Every refusal is counted, in fewer lines than refusals (at most one a second).
        assert wait_for(lambda: sum(counted()) >= 20)
        assert len(counted()) < 20


# --- WebSockets and --limit-concurrency -------------------------------------------------------


def test_websocket_sessions_count_toward_limit_concurrency(serve: Serve) -> None:
    with serve(hello, limit_concurrency=1) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        with connect(url, open_timeout=10) as ws:
            ws.send("ping")
            assert ws.recv(timeout=10) == "ping"
            with pytest.raises(InvalidStatus) as refused:
                connect(url, open_timeout=10)
            assert refused.value.response.status_code == 503
            assert httpx.get(f"http://127.0.0.1:{server.port}/", timeout=10).status_code == 503

        def accepted() -> bool:
            try:
                with connect(url, open_timeout=10) as again:
                    again.send("back")
                    return again.recv(timeout=10) == "back"
            except InvalidStatus:
                return False

        assert wait_for(accepted)


# --- Out of file descriptors ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def few_descriptors(loop_name: str) -> Iterator[DualcornProcess]:
    """A server process allowed 40 descriptors, on 127.0.0.1:0."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    proc = subprocess.Popen(
        [sys.executable, "-m", "dualcorn", "tests.test_connection_limits:hello", "--port", "0",
         "--loop", loop_name, "--interface", "asgi3", "--lifespan", "off", "--no-access-log"],
        env=child_env(),
        preexec_fn=limit,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        server = DualcornProcess(proc)
        server.wait_until_serving(30)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_running_out_of_descriptors_pauses_accepting(few_descriptors: DualcornProcess) -> None:
    server = few_descriptors
    assert server.port is not None
    clients = []
    try:
        # Each connection the server accepts costs it a descriptor; the kernel completes the
        # handshake of the rest, which wait in the backlog.
        for _ in range(80):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            clients.append(sock)
        # Let the server try (and fail) to accept for a while, and measure what that costs.
        cpu_before, wall_before = cpu_seconds(server.proc.pid), time.monotonic()
        time.sleep(3.0)
        cpu_used = cpu_seconds(server.proc.pid) - cpu_before
        wall = time.monotonic() - wall_before
        assert server.proc.poll() is None, server.stderr_text()
        # A spinning accept loop uses a whole core; a paused one almost nothing.
        assert cpu_used / wall < 0.5, f"{cpu_used:.2f} s of CPU in {wall:.2f} s"
        log = server.stderr_text()
        assert "Traceback" not in log
        assert len(log.splitlines()) < 40, log[-2000:]
    finally:
        for sock in clients:
            sock.close()
    # Descriptors are free again: a new request is served.
    assert wait_for(lambda: served(server.port), timeout=20), server.stderr_text()[-2000:]
    assert server.stop() == 0
    assert "Traceback" not in server.stderr_text()


# --- --timeout-lifespan -----------------------------------------------------------------------

HANGING_APP = """
import asyncio

async def app(scope, receive, send):
    if scope["type"] != "lifespan":
        return
    message = await receive()
    if message["type"] == "lifespan.startup" and {startup_hangs}:
        await asyncio.Event().wait()
    await send({{"type": "lifespan.startup.complete"}})
    await receive()
    await asyncio.Event().wait()  # shutdown never completes
"""


def start(tmp_path: Path, loop: str, startup_hangs: bool, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "hanging.py").write_text(HANGING_APP.format(startup_hangs=startup_hangs))
    return subprocess.Popen(
        [sys.executable, "-m", "dualcorn", "hanging:app", "--port", "0", "--loop", loop,
         "--lifespan", "on", "--timeout-lifespan", "0.5", *args],
        cwd=tmp_path,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.mark.parametrize("loop", LOOPS)
def test_a_hanging_lifespan_startup_exits_3(tmp_path: Path, loop: str) -> None:
    proc = start(tmp_path, loop, True)
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 3, stderr
    assert "startup did not complete in 0.5 s (--timeout-lifespan)" in stderr
    assert "running on" not in stderr


@pytest.mark.parametrize("loop", LOOPS)
def test_a_hanging_lifespan_shutdown_is_bounded(tmp_path: Path, loop: str) -> None:
    proc = start(tmp_path, loop, False, "--timeout-graceful-shutdown", "none")
    try:
        server = DualcornProcess(proc)
        server.wait_until_serving(30)
        assert server.stop(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert "shutdown did not finish in 0.5 s" in server.stderr_text()
