"""Coming from gunicorn or uvicorn: their command lines, habits and log configs work as is.

Everything here runs the real command in a subprocess (the installed ``dualcorn`` script where
the point is "as a user types it") and talks to it over real sockets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO_ROOT, DualcornProcess, child_env, run_dualcorn

APP = "tests.apps.coretest_app:app"
WSGI_APP = "tests.apps.fw_flask:app"
SCRIPT = Path(sys.executable).with_name("dualcorn")  # the console script pip installed


def dualcorn_command() -> tuple[str, ...]:
    if not SCRIPT.exists():
        pytest.skip(f"the dualcorn script is not installed next to {sys.executable}")
    return (str(SCRIPT),)


def run_to_exit(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dualcorn", *args],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
    )


def hide_packages(tmp_path: Path, *names: str) -> dict[str, str]:
    """An environment in which importing ``names`` fails, as on a machine without them."""
    hidden = tmp_path / "hidden"
    for name in names:
        package = hidden / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            f'raise ModuleNotFoundError("No module named {name!r}", name={name!r})\n'
        )
    return {"PYTHONPATH": f"{hidden}{os.pathsep}{REPO_ROOT}"}


def wait_for_text(read: object, pattern: str, count: int = 1, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found: list[str] = re.findall(pattern, read())  # type: ignore[operator]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not seen {count} times in:\n{read()}")  # type: ignore[operator]
        time.sleep(0.05)


def addresses(server: DualcornProcess, count: int) -> list[str]:
    return wait_for_text(server.stderr_text, r"running on (\S+)", count)


# --- gunicorn's command line, as its docs write it -----------------------------------------


def test_gunicorn_command_line_from_its_docs_serves() -> None:
    # gunicorn -w 4 -b 0.0.0.0:8000 --max-requests 1000 --graceful-timeout 30
    #          --access-logfile - app:app   (127.0.0.1 and a free port here)
    args = ("-w", "4", "-b", "127.0.0.1:0", "--max-requests", "1000", "--graceful-timeout",
            "30", "--access-logfile", "-", APP)  # fmt: skip
    with run_dualcorn(*args, command=dualcorn_command(), startup_timeout=60) as server:
        wait_for_text(server.stderr_text, r"Worker \[\d+\] is serving", 4, timeout=60)
        for n in range(8):
            response = httpx.get(f"{server.url}/gunicorn/{n}", timeout=30)
            assert response.status_code == 200
            assert response.text == f"GET /gunicorn/{n}"
        wait_for_text(server.stdout_text, r'"GET /gunicorn/7 HTTP/1\.1" 200', timeout=10)
        assert server.stop(timeout=30) == 0
    err = server.stderr_text()
    # Said once, by the supervisor, not once per worker.
    assert len(re.findall("running on", err)) == 1, err
    assert "Traceback" not in err
    assert '"GET /gunicorn/0 HTTP/1.1" 200' not in err  # access lines went to stdout


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        (["-w", "3"], "workers", 3),
        (["-b", "127.0.0.1:9", "--bind", "unix:/tmp/x.sock"], "bind",
         ("127.0.0.1:9", "unix:/tmp/x.sock")),
        (["-t", "7"], "timeout_worker_healthcheck", 7.0),
        (["--timeout", "7.5"], "timeout_worker_healthcheck", 7.5),
        (["--graceful-timeout", "9"], "timeout_graceful_shutdown", 9.0),
        (["--keep-alive", "2"], "timeout_keep_alive", 2.0),
        (["--max-requests", "1000"], "limit_max_requests", 1000),
        (["--max-requests-jitter", "50"], "limit_max_requests_jitter", 50),
        (["--access-logfile", "-"], "access_logfile", "-"),
        (["--error-logfile", "err.log"], "error_logfile", "err.log"),
        (["--log-file", "err.log"], "error_logfile", "err.log"),
        (["--limit-request-line", "4094"], "limit_request_line", 4094),
        (["--limit-request-fields", "50"], "limit_request_fields", 50),
        (["--uds-mode", "660"], "uds_mode", 0o660),
        (["--ws", "websockets-sansio"], "ws", "websockets"),
    ],
)  # fmt: skip
def test_gunicorn_and_uvicorn_spellings(args: list[str], field: str, value: object) -> None:
    from dualcorn.cli import config_from_args

    assert getattr(config_from_args([*args, "main:app"]), field) == value


def test_meaningless_gunicorn_options_warn_and_go_on() -> None:
    args = ("-k", "uvicorn.workers.UvicornWorker", "--preload", "--port", "0", APP)
    with run_dualcorn(*args) as server:
        assert httpx.get(f"{server.url}/k").text == "GET /k"
        assert server.stop() == 0
    warnings = [line for line in server.stderr_text().splitlines() if "is ignored" in line]
    assert len(warnings) == 2, server.stderr_text()
    assert warnings[0].startswith("dualcorn: warning: -k/--worker-class is ignored")


# --- Strict and forgiving parsing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        (["--limit-request-body", "10M"], "limit_request_body", 10 * 1024 * 1024),
        (["--limit-request-body", "1G"], "limit_request_body", 1 << 30),
        (["--limit-request-head", "512K"], "limit_request_head", 512 * 1024),
        (["--limit-request-head", "32kb"], "limit_request_head", 32 * 1024),
        (["--limit-request-line", "4096"], "limit_request_line", 4096),
        (["--ws-max-size", "1.5M"], "ws_max_size", 1536 * 1024),
        (["--h11-max-incomplete-event-size", "8K"], "limit_request_head", 8192),
        (["--timeout-keep-alive", "0.5"], "timeout_keep_alive", 0.5),
        (["--reload-delay", "1.25"], "reload_delay", 1.25),
    ],
)
def test_sizes_take_binary_units_and_durations_take_seconds(
    args: list[str], field: str, value: object
) -> None:
    from dualcorn.cli import config_from_args

    assert getattr(config_from_args([*args, "main:app"]), field) == value


def test_a_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from dualcorn.cli import config_from_args

    monkeypatch.setenv("DUALCORN_LIMIT_REQUEST_BODY", "2M")
    assert config_from_args(["main:app"]).limit_request_body == 2 << 20


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--time", "5"], "unrecognized arguments: --time"),  # no prefix matching
        (["--limit-con", "5"], "unrecognized arguments: --limit-con"),
        (["--workers", "2", "--reloa"], "unrecognized arguments: --reloa"),
        (["--limit-request-body", "10X"], "--limit-request-body"),
        (["--limit-request-body", "1.5"], "--limit-request-body"),
        (["--timeout-keep-alive", "5s"], "--timeout-keep-alive"),
        (["--uds-mode", "9"], "--uds-mode"),
        (["--bind", "::1:80"], "bind"),
        (["--bind", "unix:"], "bind"),
    ],
)
def test_argument_errors_are_one_line_and_a_hint(args: list[str], named: str) -> None:
    result = run_to_exit(*args, APP)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr  # not the usage block
    assert lines[0].startswith("dualcorn: error: ") and named in lines[0], lines[0]
    assert lines[1] == "run 'dualcorn --help' for the options"


def test_help_states_every_default_and_shows_examples() -> None:
    from dualcorn.cli_options import build_parser

    parser = build_parser()
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        assert action.help, action.option_strings
        if action.dest.startswith("_"):  # refused or ignored options say whose they are
            assert "gunicorn's" in action.help or "uvicorn's" in action.help
        else:
            assert "(default: " in action.help, action.option_strings
    result = subprocess.run([*dualcorn_command(), "--help"], env=child_env(),
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0
    epilog = result.stdout.split("examples:", 1)[1]
    assert len(re.findall(r"^  dualcorn \S+", epilog, re.MULTILINE)) == 3, epilog
    assert "DUALCORN_" in epilog


# --- Several addresses, and Unix socket files that do not outlive the server ---------------

MODES = {"single": (), "workers": ("--workers", "2"), "reload": ("--reload",)}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_bind_is_served_and_the_socket_file_removed(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "app.sock"
    extra = MODES[mode] + (("--reload-dir", str(tmp_path)) if mode == "reload" else ())
    args = ("-b", "127.0.0.1:0", "-b", f"unix:{path}", *extra, "--lifespan", "off", APP)
    with run_dualcorn(*args, startup_timeout=60) as server:
        tcp, unix = addresses(server, 2)
        assert unix == f"unix:{path}"
        assert (path.stat().st_mode & 0o777) == 0o666
        assert httpx.get(f"{tcp}/over-tcp", timeout=30).text == "GET /over-tcp"
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
            assert client.get("http://localhost/over-uds", timeout=30).text == "GET /over-uds"
        assert server.stop(timeout=30) == 0
    err = server.stderr_text()
    assert len(re.findall("running on", err)) == 2, err  # once per address, not per process
    assert not path.exists(), "the socket file outlived the server"


def test_two_tcp_binds_both_answer() -> None:
    args = ("-b", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--lifespan", "off", APP)
    with run_dualcorn(*args) as server:
        first, second = addresses(server, 2)
        assert first != second
        for url in (first, second):
            assert httpx.get(f"{url}/two").text == "GET /two"
        assert server.stop() == 0


# --- uvicorn's log configs -----------------------------------------------------------------

# uvicorn's documented default LOGGING_CONFIG (uvicorn/config.py), as a user copies it.
UVICORN_LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "uvicorn.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {"formatter": "default", "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler",
                   "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}  # fmt: skip


def test_uvicorn_default_logging_config_gives_the_normal_lines(tmp_path: Path) -> None:
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(UVICORN_LOGGING_CONFIG))
    # Whether or not uvicorn is installed, its class names must resolve to dualcorn's.
    env = hide_packages(tmp_path, "uvicorn")
    args = ("--port", "0", "--log-config", str(path), "--no-use-colors", APP)
    with run_dualcorn(*args, command=dualcorn_command(), env=env) as server:
        assert httpx.get(f"{server.url}/logged?x=1").status_code == 200
        # A refused WebSocket handshake (no key) logs an access line of another shape.
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
        assert httpx.get(f"{server.url}/socket", headers=upgrade).status_code == 400
        wait_for_text(server.stdout_text, "/socket")
        assert server.stop() == 0
    err, out = server.stderr_text(), server.stdout_text()
    assert re.search(r'^INFO: +127\.0\.0\.1:\d+ - "WebSocket /socket" 400 Bad Request$', out, re.M)
    assert "Logging error" not in err, err
    assert re.search(r"^INFO: +dualcorn running on http://127\.0\.0\.1:\d+", err, re.M), err
    assert re.search(r"^INFO: +Application startup complete\.", err, re.M), err
    pattern = r'^INFO: +127\.0\.0\.1:\d+ - "GET /logged\?x=1 HTTP/1\.1" 200 OK$'
    assert re.search(pattern, out, re.M), out
    assert "Traceback" not in err


UVICORN_INI = """\
[loggers]
keys=root,uvicorn_error,uvicorn_access

[handlers]
keys=stderr

[formatters]
keys=plain

[logger_root]
level=WARNING
handlers=

[logger_uvicorn_error]
level=INFO
handlers=stderr
qualname=uvicorn.error
propagate=0

[logger_uvicorn_access]
level=INFO
handlers=stderr
qualname=uvicorn.access
propagate=0

[handler_stderr]
class=StreamHandler
formatter=plain
args=(sys.stderr,)

[formatter_plain]
class=uvicorn.logging.DefaultFormatter
format=INI %(levelprefix)s %(message)s
"""


def test_uvicorn_ini_log_config(tmp_path: Path) -> None:
    path = tmp_path / "logging.ini"
    path.write_text(UVICORN_INI)
    args = ("--port", "0", "--log-config", str(path), "--no-use-colors", APP)
    with run_dualcorn(*args, env=hide_packages(tmp_path, "uvicorn")) as server:
        assert httpx.get(f"{server.url}/ini").status_code == 200
        wait_for_text(server.stderr_text, "/ini")
        assert server.stop() == 0
    err = server.stderr_text()
    assert re.search(r"^INI INFO: +dualcorn running on", err, re.M), err
    assert re.search(r'^INI INFO: +127\.0\.0\.1:\d+ - "GET /ini HTTP/1\.1" 200', err, re.M), err


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bad.json", '{"version": 1, "handlers": '),
        ("unknown.json", json.dumps({"version": 1, "handlers": {"h": {"class": "no.Such"}}})),
        ("noversion.json", json.dumps({"loggers": {}})),
        ("bad.ini", "[loggers]\nkeys=root\n"),
        ("bad.yaml", "version: 1\nformatters: [unclosed\n"),
    ],
)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_broken_log_config_is_one_line_and_exit_3(
    tmp_path: Path, name: str, text: str, workers: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = run_to_exit("--log-config", str(path), "--workers", workers, "--port", "0", APP)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"dualcorn: error: log_config {path}"), lines[0]


# --- Logs that read right ------------------------------------------------------------------


def test_access_and_error_logfiles(tmp_path: Path) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    args = ("--port", "0", "--access-logfile", str(access), "--error-logfile", str(errors), APP)
    # The port is learnt from the error log: watch the file, not stderr.
    proc = subprocess.Popen([sys.executable, "-m", "dualcorn", *args], cwd=REPO_ROOT,
                            env=child_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        read_errors = lambda: errors.read_text() if errors.exists() else ""  # noqa: E731
        [port] = wait_for_text(read_errors, r"running on http://127\.0\.0\.1:(\d+)")
        assert httpx.get(f"http://127.0.0.1:{port}/to-file").status_code == 200
        wait_for_text(access.read_text, "/to-file")
        proc.send_signal(2)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        proc.stderr.close()
    assert "running on" not in stderr and "/to-file" not in stderr
    assert '"GET /to-file HTTP/1.1" 200' in access.read_text()
    assert "\x1b[" not in access.read_text()  # no colour codes in a file


def test_wsgi_app_has_no_lifespan_chatter() -> None:
    pytest.importorskip("flask")
    with run_dualcorn("--port", "0", WSGI_APP) as server:
        assert httpx.get(f"{server.url}/").status_code < 500
        assert server.stop() == 0
    err = server.stderr_text()
    assert "WSGI application" in err, err
    assert "application startup" not in err.lower() and "application shutdown" not in err.lower()


def test_a_503_from_limit_concurrency_gets_an_access_line() -> None:
    with run_dualcorn("--port", "0", "--limit-concurrency", "1", APP) as server:
        slow = threading.Thread(target=httpx.get, args=(f"{server.url}/slow?3",),
                                kwargs={"timeout": 30})  # fmt: skip
        slow.start()
        wait_for_text(server.stdout_text, "slow started")
        assert httpx.get(f"{server.url}/refused").status_code == 503
        slow.join(30)
        wait_for_text(server.stderr_text, '"GET /slow', timeout=10)
        assert server.stop() == 0
    assert re.search(r'127\.0\.0\.1:\d+ - "GET /refused HTTP/1\.1" 503 ', server.stderr_text())


def test_reload_without_watchfiles_is_one_line(tmp_path: Path) -> None:
    result = run_to_exit("--reload", "--port", "0", APP, env=hide_packages(tmp_path, "watchfiles"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "watchfiles" in lines[0] and "dualcorn[standard]" in lines[0]


def test_websocket_upgrade_without_the_package_is_501(tmp_path: Path) -> None:
    env = hide_packages(tmp_path, "websockets")
    with run_dualcorn("--port", "0", APP, env=env) as server:
        headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
        response = httpx.get(f"{server.url}/ws", headers=headers)
        assert response.status_code == 501
        assert httpx.get(f"{server.url}/plain").text == "GET /plain"  # HTTP still works
        wait_for_text(server.stderr_text, '"GET /ws HTTP/1.1" 501')
        assert server.stop() == 0
    err = server.stderr_text()
    refusals = [line for line in err.splitlines() if "refused with 501" in line]
    assert len(refusals) == 1 and "websockets package" in refusals[0], err


CONTEXT_APP = """
import contextvars

var = contextvars.ContextVar("var", default="unset")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                var.set("set by lifespan")
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    seen = var.get()
    var.set("set by " + scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": seen.encode()})
"""


def test_reset_contextvars_is_accepted_and_already_so(tmp_path: Path) -> None:
    (tmp_path / "ctx_app.py").write_text(CONTEXT_APP)
    args = ("--reset-contextvars", "--port", "0", "ctx_app:app")
    with run_dualcorn(*args, cwd=tmp_path) as server, httpx.Client() as client:
        # Two requests on one keep-alive connection: neither sees lifespan's value nor the
        # other request's.
        assert client.get(f"{server.url}/first").text == "unset"
        assert client.get(f"{server.url}/second").text == "unset"
        assert server.stop() == 0


# --- uvicorn 0.54's options, name by name ---------------------------------------------------

# `uvicorn --help` of uvicorn 0.54.0, every option name.
UVICORN_054 = [
    "--access-log",
    "--app-dir",
    "--backlog",
    "--date-header",
    "--env-file",
    "--factory",
    "--fd",
    "--forwarded-allow-ips",
    "--h11-max-incomplete-event-size",
    "--header",
    "--help",
    "--host",
    "--http",
    "--http2",
    "--interface",
    "--lifespan",
    "--limit-concurrency",
    "--limit-max-requests",
    "--limit-max-requests-jitter",
    "--log-config",
    "--log-level",
    "--loop",
    "--no-access-log",
    "--no-date-header",
    "--no-proxy-headers",
    "--no-server-header",
    "--no-use-colors",
    "--port",
    "--proxy-headers",
    "--reload",
    "--reload-delay",
    "--reload-dir",
    "--reload-exclude",
    "--reload-include",
    "--reset-contextvars",
    "--root-path",
    "--server-header",
    "--ssl-ca-certs",
    "--ssl-cert-reqs",
    "--ssl-certfile",
    "--ssl-ciphers",
    "--ssl-keyfile",
    "--ssl-keyfile-password",
    "--ssl-version",
    "--timeout-graceful-shutdown",
    "--timeout-keep-alive",
    "--timeout-worker-healthcheck",
    "--uds",
    "--use-colors",
    "--version",
    "--workers",
    "--ws",
    "--ws-max-queue",
    "--ws-max-size",
    "--ws-per-message-deflate",
    "--ws-ping-interval",
    "--ws-ping-timeout",
]
# Not accepted (yet); each is named in the README with the reason.
NOT_YET = {"--http2", "--ssl-ca-certs", "--ssl-cert-reqs", "--ssl-certfile", "--ssl-ciphers",
           "--ssl-keyfile", "--ssl-keyfile-password", "--ssl-version"}  # fmt: skip


def test_every_uvicorn_option_is_accepted_or_explained() -> None:
    from dualcorn.cli_options import build_parser

    accepted = {o for a in build_parser()._actions for o in a.option_strings}
    missing = [name for name in UVICORN_054 if name not in accepted and name not in NOT_YET]
    assert not missing, f"uvicorn options neither accepted nor explained: {missing}"
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("uvicorn 0.54 options that dualcorn does not accept", 1)[1][:1500]
    unexplained = [name for name in NOT_YET - accepted if f"`{name}" not in section]
    assert not unexplained, unexplained


def test_bind_an_inherited_descriptor_and_a_port() -> None:
    import socket

    with socket.socket() as inherited:
        inherited.bind(("127.0.0.1", 0))
        inherited.listen()
        port = inherited.getsockname()[1]
        fd = inherited.fileno()
        args = ("-b", f"fd://{fd}", "-b", "127.0.0.1:0", "--lifespan", "off", APP)
        with run_dualcorn(*args, pass_fds=(fd,)) as server:
            first, second = addresses(server, 2)
            assert first == f"http://127.0.0.1:{port}"
            for url in (first, second):
                assert httpx.get(f"{url}/fd").text == "GET /fd"
            assert server.stop() == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://0.0.0.0:8000"),  # gunicorn's default port
        (":9000", "http://0.0.0.0:9000"),
        ("tcp://localhost:81", "http://localhost:81"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("[::]", "http://[::]:8000"),
        ("unix:/run/app.sock", "unix:/run/app.sock"),
        ("unix:///run/app.sock", "unix:/run/app.sock"),
        ("fd://3", "fd://3"),
    ],
)
def test_bind_forms(text: str, expected: str) -> None:
    from dualcorn.addresses import parse_bind

    assert str(parse_bind(text)) == expected
