"""SIGTERM with --shutdown-delay, and SIGUSR1 reopening log files, on the real command."""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO_ROOT, DualcornProcess
from tests.platform_support import APP, popen_dualcorn, stop_process
from tests.supervising import wait_for

# Options, and how many server processes serve at once under a supervisor (0: no supervisor).
RELOAD = ("--reload", "--reload-dir", str(REPO_ROOT / "docs"))  # a directory nobody edits
MODES = [
    pytest.param((), 0, id="single"),
    pytest.param(("--workers", "2"), 2, id="workers"),
    pytest.param(RELOAD, 1, id="reload"),
]
DELAY = 6.0  # long enough for the requests below on a busy machine; they do not time it


def wait_serving(server: DualcornProcess, supervised: int) -> None:
    """Until every server process serves (a supervisor reports each; a lone server says so)."""
    if not supervised:
        return  # "running on" came from the server itself: popen_dualcorn waited for it
    found = re.compile(r"(Worker|Server process) \[\d+\] is serving")
    wait_for(lambda: len(found.findall(server.stderr_text())) >= supervised, 30, "every server")


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except OSError:
        return True


@pytest.mark.parametrize(("extra", "supervised"), MODES)
def test_shutdown_delay_serves_with_connection_close_then_stops(
    extra: tuple[str, ...], supervised: int
) -> None:
    # A graceful timeout shorter than the delay: a supervisor must start its kill clock after
    # the delay, not when it passed SIGTERM on.
    command = [sys.executable, "-m", "dualcorn", *APP, "--port", "0", "--shutdown-delay",
               str(DELAY), "--timeout-graceful-shutdown", "1", *extra]  # fmt: skip
    with popen_dualcorn(command) as server, httpx.Client(timeout=30) as kept:
        port = server.wait_until_serving(30)
        url = f"http://127.0.0.1:{port}"
        wait_serving(server, supervised)
        before = kept.get(f"{url}/before")
        assert before.status_code == 200 and "connection" not in before.headers
        server.proc.send_signal(signal.SIGTERM)
        draining = supervised or 1
        wait_for(lambda: server.stderr_text().count("Shutdown delay") == draining, 30,
                 "the shutdown delay to begin")  # fmt: skip
        # New connections are still accepted and served, and told not to come back.
        for _ in range(3):
            with httpx.Client(timeout=30) as fresh:
                response = fresh.get(f"{url}/during")
            assert response.status_code == 200
            assert response.text == "GET /during"
            assert response.headers["connection"] == "close"
        # A keep-alive connection from before gets its answer, then is closed too.
        again = kept.get(f"{url}/again")
        assert again.status_code == 200 and again.headers["connection"] == "close"
        wait_for(lambda: refuses(port), 60, "the port to stop accepting after the delay")
        assert server.proc.wait(timeout=60) == 0
    text = server.stderr_text()
    assert "Traceback" not in text
    assert "did not stop in time" not in text
    if supervised == 2:
        # Both workers drained at the same time: the delay is paid once, not once per worker.
        lines = text.splitlines()
        delays = [i for i, line in enumerate(lines) if "Shutdown delay" in line]
        stops = [i for i, line in enumerate(lines) if line.endswith("Shutting down")]
        assert len(stops) == 2 and max(delays) < min(stops)


def test_sigint_skips_the_shutdown_delay() -> None:
    command = [sys.executable, "-m", "dualcorn", *APP, "--port", "0", "--shutdown-delay", "600"]
    with popen_dualcorn(command) as server:
        server.wait_until_serving(30)
        # With the delay applied this would outlive the wait below many times over.
        assert stop_process(server, signal.SIGINT, timeout=60) == 0
    assert "Shutdown delay" not in server.stderr_text()


def log_config(directory: Path) -> Path:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "[%(process)d] %(message)s"}},
        "handlers": {
            "access": {
                "class": "logging.FileHandler",
                "formatter": "plain",
                "filename": str(directory / "access.log"),
            },
            "errors": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "dualcorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "dualcorn.error": {"handlers": ["errors"], "level": "INFO", "propagate": False},
        },
    }
    path = directory / "logging.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(("extra", "supervised"), MODES)
def test_sigusr1_reopens_the_access_log(
    tmp_path: Path, extra: tuple[str, ...], supervised: int
) -> None:
    access, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    command = [sys.executable, "-m", "dualcorn", *APP, "--port", "0",
               "--log-config", str(log_config(tmp_path)), *extra]  # fmt: skip
    with popen_dualcorn(command) as server:
        port = server.wait_until_serving(30)
        wait_serving(server, supervised)
        # The supervisor has handlers of its own; a reloader's warm standby has none yet.
        processes = supervised + 1 if supervised else 1
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/first", timeout=30).status_code == 200
        wait_for(lambda: "/first" in access.read_text(), 30, "the first access line")
        access.rename(rotated)  # what logrotate does before it signals
        server.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: server.stderr_text().count("Reopened 1 log file(s).") == processes,
                 30, "every process to reopen its log")  # fmt: skip
        for _ in range(4):  # fresh connections: with --workers, both workers answer some
            assert httpx.get(f"{url}/second", timeout=30).status_code == 200
        wait_for(lambda: access.exists() and access.read_text().count("/second") == 4, 30,
                 "the access lines in the new file")  # fmt: skip
        assert "/second" not in rotated.read_text()
        assert stop_process(server, signal.SIGTERM) == 0
    assert "Traceback" not in server.stderr_text()
    if supervised:
        assert "Received SIGUSR1: reopening log files." in server.stderr_text()


def test_a_single_server_survives_sighup() -> None:
    # ExecReload=kill -HUP on a unit without --workers: the server must not die of it.
    with popen_dualcorn([sys.executable, "-m", "dualcorn", *APP, "--port", "0"]) as server:
        port = server.wait_until_serving(30)
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "Received SIGHUP: ignored" in server.stderr_text(), 30, "the warning")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200
        assert stop_process(server, signal.SIGTERM) == 0
