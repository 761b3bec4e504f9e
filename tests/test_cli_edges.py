"""Odd option values a user may type: each is one line and a status, never a traceback.

Found by trying the command line as a new user would (issue #9's review): a huge --backlog,
an --fd that is not an open socket, an empty --uds, a negative --reload-delay, the same
--bind twice, gunicorn's ``--log-level DEBUG`` and ``--limit-request-field_size``, and an
environment variable that is not a number.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO_ROOT, child_env, run_dualcorn

APP = "tests.apps.coretest_app:app"


def run_to_exit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dualcorn", *args],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,  # so --fd 0 names something that is not a socket
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("dualcorn: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--backlog", "99999999999"], {}, "backlog must be at most"),
        (["--fd", "-1"], {}, "fd must be a descriptor number"),
        (["--uds", ""], {}, "uds needs a path"),
        (["--reload-delay", "-1"], {}, "reload_delay must not be negative"),
        (
            ["--uds-mode", "1777"],
            {},
            "uds_mode must be a permission mode such as 0o660; got 0o1777",
        ),
        ([], {"DUALCORN_WORKERS": "abc"}, "DUALCORN_WORKERS='abc': expected a whole number"),
        ([], {"DUALCORN_BACKLOG": "1.5"}, "DUALCORN_BACKLOG='1.5': expected a whole number"),
    ],
)
def test_odd_values_are_argument_errors(args: list[str], env: dict[str, str], named: str) -> None:
    result = run_to_exit(*args, APP, env=env)
    assert result.returncode == 2, result.stderr
    assert named in one_error_line(result)
    assert result.stderr.splitlines()[-1] == "run 'dualcorn --help' for the options"


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--fd", "0"], "cannot serve on descriptor 0: "),  # stdin: /dev/null, not a socket
        (["--fd", "987"], "cannot serve on descriptor 987: Bad file descriptor"),
        (["--bind", "fd://987"], "cannot serve on descriptor 987: "),
    ],
)
def test_an_unusable_descriptor_is_one_line_and_exit_3(
    args: list[str], named: str, workers: str
) -> None:
    result = run_to_exit(*args, "--workers", workers, APP)
    assert result.returncode == 3, result.stderr
    assert named in one_error_line(result)


def test_a_datagram_descriptor_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        fd = udp.fileno()
        result = subprocess.run(
            [sys.executable, "-m", "dualcorn", "--fd", str(fd), APP],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            pass_fds=(fd,),
        )
    assert result.returncode == 3, result.stderr
    assert "it is not a stream socket" in one_error_line(result)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_same_bind_twice_is_served_once(workers: str) -> None:
    # gunicorn's habits: the same bind twice, and its spelling of the field-size limit.
    port = free_port()
    args = ("-b", f"127.0.0.1:{port}", "--bind", f"127.0.0.1:{port}", "-w", workers,
            "--limit-request-field_size", "8190", APP)  # fmt: skip
    with run_dualcorn(*args) as server:
        assert httpx.get(f"http://127.0.0.1:{port}/twice", timeout=30).text == "GET /twice"
        assert server.stop() == 0
    err = server.stderr_text()
    assert len(re.findall(r"running on http://127\.0\.0\.1:\d+", err)) == 1, err
    assert "is ignored" not in err, err  # --limit-request-field_size is dualcorn's option too


def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    from dualcorn.cli import config_from_args

    assert config_from_args(["--log-level", "WARNING", "main:app"]).log_level == "warning"
    monkeypatch.setenv("DUALCORN_LOG_LEVEL", "Debug")
    assert config_from_args(["main:app"]).log_level == "debug"


def test_help_names_every_value_and_tells_no_untruth() -> None:
    from dualcorn.cli_options import build_parser

    text = build_parser().format_help()
    # Every metavar is a word a person reads (SIZE, N, SECONDS), not a dest in capitals.
    assert "H11_MAX_INCOMPLETE_EVENT_SIZE" not in text
    assert "--h11-max-incomplete-event-size SIZE" in text
    # wsgi.file_wrapper uses sendfile, so --no-sendfile's reason must not deny it.
    assert "does not use sendfile" not in text
    assert re.search(r"--reload-dir DIR\s+directory to watch.*\(default: the\s+current", text, re.S)


def test_an_ini_log_config_missing_a_section_names_it(tmp_path: Path) -> None:
    path = tmp_path / "logging.ini"
    path.write_text("[loggers]\nkeys=root\n")
    result = run_to_exit("--log-config", str(path), APP)
    assert result.returncode == 3, result.stderr
    assert "no section or key 'formatters'" in one_error_line(result)


BLOCKING_APP = """
import os, time

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    time.sleep(3)  # blocks the event loop: no heartbeat for 3 s
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


def test_gunicorn_timeout_0_never_kills_a_worker(tmp_path: Path) -> None:
    # Cloud Run's documented line is "gunicorn --workers 1 --threads 8 --timeout 0 main:app":
    # 0 is gunicorn's "no worker timeout", not "kill at once" and not an error.
    (tmp_path / "blocking.py").write_text(BLOCKING_APP)
    args = ("--workers", "1", "--threads", "8", "--timeout", "0", "--port", "0",
            "--lifespan", "off", "blocking:app")  # fmt: skip
    with run_dualcorn(*args, cwd=tmp_path) as server:
        first = httpx.get(server.url, timeout=60)
        second = httpx.get(server.url, timeout=60)
        assert first.status_code == second.status_code == 200
        assert first.text == second.text  # the same worker answered: it was not replaced
        assert server.stop() == 0
    assert "sent no heartbeat" not in server.stderr_text()


@pytest.mark.parametrize("option", ["--timeout-worker-healthcheck", "--timeout-graceful-shutdown"])
def test_an_enormous_timeout_is_a_long_wait_not_an_overflow(option: str) -> None:
    # poll(2) cannot wait 1e300 seconds; the supervisor must not pass that through.
    with run_dualcorn("--workers", "2", option, "1e300", "--port", "0", APP) as server:
        assert httpx.get(f"{server.url}/long", timeout=30).text == "GET /long"
        assert server.stop() == 0
    assert "Traceback" not in server.stderr_text()


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        # Django's documented "gunicorn myproject.wsgi": gunicorn's default attribute.
        ("mysite.wsgi", "gunicorn's bare 'mysite.wsgi' means 'mysite.wsgi:application'"),
        ("wsgi", "gunicorn's bare 'wsgi' means 'wsgi:application'"),
        ("main.app", "did you mean 'main:app'?"),
        ("main.py", "not a file path: did you mean 'main:app'?"),
    ],
)
def test_a_bare_module_names_gunicorns_meaning(text: str, hint: str) -> None:
    from dualcorn.errors import LoadError
    from dualcorn.loading import load_app

    with pytest.raises(LoadError) as caught:
        load_app(text)
    assert hint in str(caught.value)
    assert "did you mean 'main:py'" not in str(caught.value)
