"""WSGI threads under attack, against the real server (a subprocess), on both loops.

Clients that never read, clients that hang up while their request waits for a thread, more
waiting requests than the queue allows, app threads stuck past the grace period, and workers
whose supervisor was SIGKILLed.  Every wait has a generous timeout; assertions are about bounds
(threads freed, RSS growth, requests the app never ran, the process gone), never timings.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.attack import MIB, healthy, rss
from tests.conftest import LOOPS
from tests.helpers import DualcornProcess, run_dualcorn
from tests.supervising import serving_pids, wait_for

pytestmark = pytest.mark.parametrize("loop", LOOPS)


@contextlib.contextmanager
def _serve(loop: str, *extra: str) -> Iterator[DualcornProcess]:
    args = ("tests.apps.attack_apps:wsgi", "--interface", "wsgi", "--port", "0", "--loop", loop)
    with run_dualcorn(*args, "--no-access-log", *extra) as server:
        yield server


def _request(port: int, target: str, *, rcvbuf: int | None = None) -> socket.socket:
    """A client that sends ``GET target`` (and may then read nothing at all)."""
    sock = socket.socket()
    if rcvbuf is not None:  # before connecting, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
    return sock


def _counts(port: int) -> dict[str, int]:
    words = httpx.get(f"http://127.0.0.1:{port}/count", timeout=10).text.split()
    return {words[0]: int(words[1]), words[2]: int(words[3])}


def _status(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a status line")
        head += chunk
    return int(head.split()[1])


def test_clients_that_never_read_do_not_hold_the_threads(loop: str) -> None:
    with _serve(loop, "--threads", "2") as server:
        port = server.port
        assert healthy(port)
        before = rss(server.proc.pid)
        # Twice as many clients as threads, each asking for 8 MiB and reading none of it.
        clients = [_request(port, "/big?mib=8", rcvbuf=4096) for _ in range(4)]
        try:
            # Each response fits in the outbox (1 MiB in memory, the rest in a temporary
            # file), so both threads are free again: another client is answered, and every
            # app returned and had close() called.
            assert healthy(port)
            counts = _counts(port)
            grown = rss(server.proc.pid) - before
        finally:
            for sock in clients:
                sock.close()
    assert counts["closed"] == 4, counts
    assert grown < 40 * MIB, grown  # 32 MiB of responses, mostly on disk


def test_a_client_that_never_reads_is_dropped_after_timeout_send(loop: str) -> None:
    with _serve(loop, "--threads", "1", "--timeout-send", "1") as server:
        port = server.port
        # 64 MiB is past the outbox's 16 MiB bound: the thread waits, but only until the
        # client has read nothing for --timeout-send; then the connection is closed.
        with _request(port, "/big?mib=64", rcvbuf=4096) as sock:
            assert healthy(port)  # served by the same single thread, once it was freed
            received = 0
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
        counts = _counts(port)
    assert received < 64 * MIB
    assert counts["closed"] == 1, counts


def test_requests_whose_client_left_are_not_run(loop: str) -> None:
    with _serve(loop, "--threads", "1") as server:
        port = server.port
        with _request(port, "/stuck?s=2") as stuck:
            waiting = [_request(port, "/work") for _ in range(100)]
            time.sleep(0.5)  # the requests reach the server and queue behind /stuck
            for sock in waiting:
                sock.close()  # ...and their clients hang up
            assert _status(stuck) == 200
        assert healthy(port)
        counts = _counts(port)
    assert counts["work"] <= 5, counts  # (a request read after its client left is not run)


def test_the_wait_queue_is_bounded_with_503(loop: str) -> None:
    with _serve(loop, "--threads", "1", "--wsgi-queue", "3") as server:
        port = server.port
        with _request(port, "/stuck?s=2") as stuck:
            time.sleep(0.3)  # /stuck holds the only thread
            clients = [_request(port, "/work") for _ in range(10)]
            try:
                statuses = sorted(_status(sock) for sock in clients)
            finally:
                for sock in clients:
                    sock.close()
            assert _status(stuck) == 200
        assert healthy(port)
    assert statuses.count(503) >= 5, statuses
    assert statuses.count(200) >= 1, statuses


def test_shutdown_keeps_its_grace_period_with_stuck_threads(loop: str) -> None:
    args = ("--threads", "3", "--timeout-graceful-shutdown", "1", "--log-level", "info")
    with _serve(loop, *args) as server:
        clients = [_request(server.port, "/stuck") for _ in range(3)]
        try:
            time.sleep(0.5)  # every thread is now in the app, for a minute
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(timeout=20)  # not the 60 s the app would take
        finally:
            for sock in clients:
                sock.close()
    log = server.stderr_text()
    assert code == 0, log
    assert "Abandoned: GET /stuck" in log, log


def test_orphaned_workers_exit_within_the_grace_period(loop: str) -> None:
    args = ("--workers", "2", "--threads", "2", "--timeout-graceful-shutdown", "1")
    with _serve(loop, *args) as server:
        supervisor = server.proc.pid
        wait_for(lambda: len(serving_pids(server)) == 2, 30, "both workers to serve")
        workers = serving_pids(server)
        handles = [os.pidfd_open(pid) for pid in workers]
        try:
            clients = [_request(server.port, "/stuck") for _ in range(2)]
            time.sleep(0.5)  # a thread (or two) is now stuck in the app for a minute
            os.kill(supervisor, signal.SIGKILL)
            deadline = time.monotonic() + 20  # generous; the app would take 60 s
            alive = set(handles)
            while alive and time.monotonic() < deadline:
                ready, _, _ = select.select(list(alive), [], [], deadline - time.monotonic())
                alive -= set(ready)
            for sock in clients:
                sock.close()
        finally:
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for handle in handles:
                os.close(handle)
    assert not alive, "orphaned workers outlived the grace period"
