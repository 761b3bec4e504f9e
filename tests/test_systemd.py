"""systemd socket activation and sd_notify, with the real command and real sockets.

Socket activation is tested with Debian's ``systemd-socket-activate`` and with a hand-over done
here (a wrapper that moves sockets to descriptors 3, 4... and execs dualcorn, as systemd does);
notifications are read from a datagram socket standing in for systemd's, with the sender's pid
from SCM_CREDENTIALS, which is what ``NotifyAccess=main`` checks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from dualcorn.systemd import Notifier, listen_sockets
from tests.helpers import REPO_ROOT
from tests.platform_support import (
    APP,
    NotifyListener,
    free_port,
    handover_command,
    popen_dualcorn,
    stop_process,
)
from tests.supervising import wait_for

WORKERS = [
    pytest.param((), id="single"),
    pytest.param(("--workers", "2"), id="workers"),
    pytest.param(("--reload", "--reload-dir", str(REPO_ROOT / "docs")), id="reload"),
]


def get_env(client: httpx.Client, url: str) -> dict[str, object]:
    response = client.get(url)
    assert response.status_code == 200
    data: dict[str, object] = response.json()
    return data


# --- Socket activation ---------------------------------------------------------------------


@pytest.mark.parametrize("extra", WORKERS)
def test_systemd_socket_activate(extra: tuple[str, ...]) -> None:
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate is not installed (Debian package systemd)")
    port = free_port()
    command = [tool, "-l", f"127.0.0.1:{port}", "--fdname=web",
               sys.executable, "-m", "dualcorn", *APP, *extra]  # fmt: skip
    with popen_dualcorn(command) as server:
        # systemd-socket-activate listens first and execs dualcorn on the first connection,
        # which waits in the socket's backlog meanwhile.
        wait_for(lambda: "Listening on" in server.stderr_text(), 30, "the listening socket")
        with httpx.Client(timeout=30) as client:
            for _ in range(4):
                seen = get_env(client, f"http://127.0.0.1:{port}/env")
                # Read and removed: neither the app nor anything it starts misreads them.
                assert set(seen["env"].values()) == {None}  # type: ignore[attr-defined]
        text = server.stderr_text()
        assert "serving on 1 passed socket(s): fd 3 (web)" in text
        assert f"running on http://127.0.0.1:{port}" in text
        # systemd-socket-activate execs: the pid it got is dualcorn's (the main pid).
        assert stop_process(server, signal.SIGTERM) == 0
    assert "Traceback" not in server.stderr_text()


@pytest.mark.parametrize("extra", WORKERS)
def test_fd_handover_of_a_tcp_and_a_unix_socket(extra: tuple[str, ...]) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    directory = tempfile.mkdtemp(prefix="dcn-")
    path = os.path.join(directory, "web.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    unix.listen()
    port = tcp.getsockname()[1]
    fds = [tcp.fileno(), unix.fileno()]
    command = handover_command(fds, "http:local", *APP, "--port", "1", *extra)
    try:
        with popen_dualcorn(command, pass_fds=tuple(fds)) as server:
            tcp.close()  # dualcorn holds them now: nothing here may accept
            unix.close()
            server.wait_until_serving(30)
            pids = set()
            with httpx.Client(timeout=30) as client:
                for _ in range(6):
                    seen = get_env(client, f"http://127.0.0.1:{port}/env")
                    assert seen["env"]["LISTEN_FDS"] is None  # type: ignore[index]
                    pids.add(seen["pid"])
            transport = httpx.HTTPTransport(uds=path)
            with httpx.Client(transport=transport, timeout=30) as client:
                response = client.get("http://local/over-unix")
                assert response.status_code == 200
                assert response.text == "GET /over-unix"
            text = server.stderr_text()
            assert "serving on 2 passed socket(s): fd 3 (http), fd 4 (local)" in text
            assert "127.0.0.1:1 " not in text  # the passed sockets win over --port
            # The main pid answers alone, or (a supervisor) never: its server processes do.
            assert pids == {server.proc.pid} if not extra else server.proc.pid not in pids
            assert stop_process(server, signal.SIGTERM) == 0
    finally:
        tcp.close()
        unix.close()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("datagram", "descriptor 3 (passed) is not a stream socket"),
        # What an Accept=yes unit (or systemd-socket-activate --accept) passes.
        ("connected", "descriptor 3 (passed) is not listening: Accept=yes units"),
        ("file", "descriptor 3 (passed) is not a socket"),
    ],
)
def test_a_socket_that_cannot_be_served_is_refused_with_a_reason(kind: str, reason: str) -> None:
    if kind == "datagram":
        passed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        passed.bind(("127.0.0.1", 0))
        fd, other = passed.fileno(), None
    elif kind == "connected":
        passed, other = socket.socketpair()
        fd = passed.fileno()
    else:
        fd, passed, other = os.open(os.devnull, os.O_RDONLY), None, None
    try:
        with popen_dualcorn(handover_command([fd], "passed", *APP), pass_fds=(fd,)) as server:
            assert server.proc.wait(timeout=30) == 3
            assert reason in server.stderr_text()
            assert "Traceback" not in server.stderr_text()
    finally:
        for sock in (passed, other):
            if sock is not None:
                sock.close()
        if passed is None:
            os.close(fd)


def test_listen_sockets_ignores_variables_meant_for_another_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert listen_sockets() == []
    assert "LISTEN_PID" not in os.environ and "LISTEN_FDS" not in os.environ


# --- sd_notify -----------------------------------------------------------------------------


@pytest.fixture
def notify() -> NotifyListener:
    listener = NotifyListener()
    yield listener  # type: ignore[misc]
    listener.close()


def test_single_process_notifies_ready_watchdog_and_stopping(notify: NotifyListener) -> None:
    env = notify.env(WATCHDOG_USEC="200000")  # a ping every 0.1 s
    with popen_dualcorn([sys.executable, "-m", "dualcorn", *APP, "--port", "0"], env) as server:
        port = server.wait_until_serving(30)
        ready = notify.wait_field("READY")
        assert ready.fields["STATUS"] == f"Serving on http://127.0.0.1:{port}"
        assert ready.fields["MAINPID"] == str(server.proc.pid)
        assert ready.sender == server.proc.pid
        first = notify.wait_field("WATCHDOG", after=notify.messages.index(ready) + 1)
        notify.wait_field("WATCHDOG", after=notify.messages.index(first) + 1)
        with httpx.Client(timeout=30) as client:
            seen = get_env(client, f"http://127.0.0.1:{port}/env")
        assert seen["env"]["NOTIFY_SOCKET"] is None  # type: ignore[index]
        server.proc.send_signal(signal.SIGTERM)
        notify.wait_field("STOPPING")
        assert server.proc.wait(timeout=30) == 0
    assert {m.sender for m in notify.messages} == {server.proc.pid}


def test_abstract_notify_socket_and_a_watchdog_for_another_pid() -> None:
    notify = NotifyListener(abstract=True)
    env = notify.env(WATCHDOG_USEC="100000", WATCHDOG_PID="1")  # someone else's watchdog
    try:
        command = [sys.executable, "-m", "dualcorn", *APP, "--port", "0"]
        with popen_dualcorn(command, env) as server:
            server.wait_until_serving(30)
            notify.wait_field("READY")
            stop_process(server, signal.SIGTERM)
            notify.wait_field("STOPPING")
        assert not [m for m in notify.messages if "WATCHDOG" in m.fields]
    finally:
        notify.close()


def test_workers_notify_from_the_supervisor_around_a_rolling_restart(
    notify: NotifyListener,
) -> None:
    env = notify.env(WATCHDOG_USEC="200000")
    command = [sys.executable, "-m", "dualcorn", *APP, "--port", "0", "--workers", "2"]
    with popen_dualcorn(command, env) as server:
        port = server.wait_until_serving(30)
        ready = notify.wait_field("READY")
        assert ready.fields["STATUS"] == f"2 of 2 workers serving on http://127.0.0.1:{port}"
        assert ready.fields["MAINPID"] == str(server.proc.pid)
        mark = len(notify.messages)
        server.proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_field("RELOADING", after=mark)
        assert int(reloading.fields["MONOTONIC_USEC"]) > 0
        assert reloading.fields["STATUS"].startswith("Rolling restart")
        ready_again = notify.wait_field("READY", after=notify.messages.index(reloading))
        assert ready_again.fields["STATUS"].startswith("2 of 2 workers serving")
        notify.wait_field("WATCHDOG", after=notify.messages.index(ready_again))
        server.proc.send_signal(signal.SIGTERM)
        notify.wait_field("STOPPING")
        assert server.proc.wait(timeout=30) == 0
    # Only systemd's main process speaks (NotifyAccess=main): never a worker.
    assert {m.sender for m in notify.messages} == {server.proc.pid}


def test_reload_notifies_reloading_then_ready(notify: NotifyListener, tmp_path: Path) -> None:
    # An empty directory of its own: watching all of /tmp made other processes' files reload
    # this server, and watchfiles holds the GIL while it walks the tree to add its watches
    # (over a second for /tmp here, far more under load), freezing the supervisor meanwhile.
    command = [sys.executable, "-m", "dualcorn", *APP, "--port", "0", "--reload",
               "--reload-dir", str(tmp_path)]  # fmt: skip
    with popen_dualcorn(command, notify.env()) as server:
        server.wait_until_serving(30)
        ready = notify.wait_field("READY")
        assert ready.fields["STATUS"].startswith("Serving on http://127.0.0.1:")
        server.proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_field("RELOADING", after=notify.messages.index(ready) + 1)
        notify.wait_field("READY", after=notify.messages.index(reloading))
        server.proc.send_signal(signal.SIGTERM)
        notify.wait_field("STOPPING")
        assert server.proc.wait(timeout=30) == 0
    assert {m.sender for m in notify.messages} == {server.proc.pid}


def test_notifier_reads_and_removes_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "@somewhere")
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_environment()
    assert notifier.address == b"\0somewhere"
    assert notifier.watchdog_interval == 1.5
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        assert name not in os.environ
    assert not Notifier("relative/path").enabled  # sd_notify accepts absolute paths and @


def test_notifier_sends_each_state_change_once(notify: NotifyListener) -> None:
    notifier = Notifier(notify.address)
    try:
        for _ in range(2):  # a supervisor calls update on every turn of its loop
            notifier.update(ready=False, reloading=False, stopping=False, status="Starting")
        notifier.update(ready=True, reloading=False, stopping=False, status="2 of 2")
        notifier.update(ready=True, reloading=True, stopping=False, status="Rolling")
        notifier.update(ready=True, reloading=True, stopping=False, status="Rolling")
        notifier.update(ready=True, reloading=False, stopping=False, status="2 of 2")
        notifier.update(ready=False, reloading=False, stopping=False, status="1 of 2")
        notifier.update(ready=False, reloading=False, stopping=True, status="Shutting down")
        notifier.update(ready=False, reloading=False, stopping=True, status="Shutting down")
        notifier.send("LAST=1")  # everything before it has arrived once it has
        notify.wait_field("LAST")
    finally:
        notifier.close()
    sent = [m.fields for m in notify.messages]
    pid = str(os.getpid())
    assert sent[0] == {"STATUS": "Starting"}
    assert sent[1] == {"READY": "1", "STATUS": "2 of 2", "MAINPID": pid}
    assert sent[2]["RELOADING"] == "1" and sent[2]["STATUS"] == "Rolling"
    assert sent[3] == {"READY": "1", "STATUS": "2 of 2"}  # MAINPID only the first time
    assert sent[4] == {"STATUS": "1 of 2"}  # a worker replaced: still started, no new READY
    assert sent[5] == {"STOPPING": "1", "STATUS": "Shutting down"}
    assert sent[6] == {"LAST": "1"}
