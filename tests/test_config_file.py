"""The config file: dualcorn.toml, [tool.dualcorn] in pyproject.toml, -c/--config FILE.

In-process tests build a Config from a file in a temporary working directory; the rest run the
real command there, serve a request, and read what it printed.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import httpx
import pytest

from dualcorn.cli import config_from_args
from dualcorn.config_file import ConfigFileError, convert, gunicorn_equivalent
from tests.helpers import REPO_ROOT, child_env, run_dualcorn

APP_SOURCE = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = (scope["method"] + " " + scope["path"]).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no config file in it yet, and no DUALCORN_* variables."""
    for name in list(os.environ):
        if name.startswith("DUALCORN_") or name == "WEB_CONCURRENCY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_defaults(workdir: Path) -> None:
    config = config_from_args(["main:app"])
    assert config.config_file is None and config.port == 8000


def test_dualcorn_toml_sets_options_by_their_names(workdir: Path) -> None:
    write(
        workdir / "dualcorn.toml",
        """
        app = "main:app"
        port = 8080
        workers = 2
        timeout-keep-alive = 10           # dashes, as on the command line
        limit_request_body = "10M"        # underscores; a size as the command line takes it
        timeout-graceful-shutdown = "none"
        bind = ["127.0.0.1:9000", "unix:/tmp/x.sock"]
        reload-exclude = "*.tmp"          # a repeatable option takes one string too
        max-requests = 1000               # gunicorn's alias
        forwarded-allow-ips = ["10.0.0.1", "10.0.0.0/8"]
        log-level = "debug"
        [headers]
        x-frame-options = "DENY"
        """.replace("\n        ", "\n"),
    )
    config = config_from_args([])
    assert config.app == "main:app"
    assert config.config_file == "dualcorn.toml"
    assert (config.port, config.workers, config.timeout_keep_alive) == (8080, 2, 10.0)
    assert config.limit_request_body == 10 * 1024 * 1024
    assert config.timeout_graceful_shutdown is None
    assert config.bind == ("127.0.0.1:9000", "unix:/tmp/x.sock")
    assert config.reload_excludes == ("*.tmp",)
    assert config.limit_max_requests == 1000
    assert config.forwarded_allow_ips == ("10.0.0.1", "10.0.0.0/8")
    assert config.log_level == "debug"
    assert config.headers == (("x-frame-options", "DENY"),)


def test_headers_as_the_command_line_writes_them(workdir: Path) -> None:
    write(workdir / "dualcorn.toml", 'header = ["x-a: 1", "x-b:2"]\n')
    assert config_from_args(["main:app"]).headers == (("x-a", "1"), ("x-b", "2"))


def test_pyproject_tool_table(workdir: Path) -> None:
    write(workdir / "pyproject.toml", '[project]\nname = "x"\n[tool.dualcorn]\nport = 9001\n')
    config = config_from_args(["main:app"])
    assert config.port == 9001
    assert config.config_file == "pyproject.toml [tool.dualcorn]"


def test_pyproject_without_the_table_is_not_a_config_file(workdir: Path) -> None:
    write(workdir / "pyproject.toml", '[project]\nname = "x"\n')
    assert config_from_args(["main:app"]).config_file is None


def test_dualcorn_toml_wins_over_pyproject(workdir: Path) -> None:
    write(workdir / "pyproject.toml", "[tool.dualcorn]\nport = 9001\n")
    write(workdir / "dualcorn.toml", "port = 9002\n")
    assert config_from_args(["main:app"]).port == 9002


def test_explicit_config_file(workdir: Path) -> None:
    write(workdir / "dualcorn.toml", "port = 9002\n")
    write(workdir / "prod.toml", "port = 9003\n")
    for flag in ("-c", "--config"):
        config = config_from_args([flag, "prod.toml", "main:app"])
        assert (config.port, config.config_file) == (9003, "prod.toml")


def test_config_from_the_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(workdir / "prod.toml", "port = 9004\n")
    monkeypatch.setenv("DUALCORN_CONFIG", "prod.toml")
    assert config_from_args(["main:app"]).port == 9004


def test_precedence_command_line_then_environment_then_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "dualcorn.toml", 'port = 1111\nbacklog = 50\nhost = "0.0.0.0"\napp = "a:b"\n')
    monkeypatch.setenv("DUALCORN_PORT", "2222")
    monkeypatch.setenv("DUALCORN_BACKLOG", "60")
    config = config_from_args(["--port", "3333", "main:app"])
    assert config.port == 3333  # command line over environment over file
    assert config.backlog == 60  # environment over file
    assert config.host == "0.0.0.0"  # file over default
    assert config.app == "main:app"  # command line's APP over the file's app
    assert config.timeout_keep_alive == 5.0  # default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 8000\n", "dualcorn.toml: unknown key 'prot'"),
        ('port = "8000"\n', 'dualcorn.toml: port must be a whole number; got "8000"'),
        ("reload = 1\n", "dualcorn.toml: reload must be true or false; got 1"),
        ('loop = "tokio"\n', "dualcorn.toml: loop must be one of auto, asyncio, uvloop"),
        ("bind = [1]\n", "dualcorn.toml: bind[0] must be a string; got 1"),
        ('limit-request-body = "ten"\n', "dualcorn.toml: limit-request-body: expected a size"),
        ("port = 70000\n", "dualcorn.toml: port must be between 0 and 65535; got 70000"),
        ("app = 3\n", "dualcorn.toml: app must be an import string"),
        ('worker-class = "sync"\n', "dualcorn.toml: unknown key 'worker-class'"),
        ("port = \n", "dualcorn.toml: not valid TOML"),
        (
            "timeout-keep-alive = 1\nkeep-alive = 2\n",
            "dualcorn.toml: 'keep-alive' sets 'timeout_keep_alive', which another key sets too",
        ),
    ],
)
def test_errors_name_the_key_and_the_file(workdir: Path, text: str, message: str) -> None:
    write(workdir / "dualcorn.toml", text)
    with pytest.raises(ConfigFileError) as caught:
        config_from_args(["main:app"])
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_missing_config_file_is_an_error(workdir: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"--config nothere\.toml: no such file"):
        config_from_args(["-c", "nothere.toml", "main:app"])


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dualcorn", *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_a_bad_key_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    write(tmp_path / "dualcorn.toml", 'app = "main:app"\nworkers = "two"\n')
    result = run_in(tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        'dualcorn: error: dualcorn.toml: workers must be a whole number; got "two"'
    ]


def test_no_app_anywhere_says_where_it_can_be_given(tmp_path: Path) -> None:
    result = run_in(tmp_path, "--port", "0")
    assert result.returncode == 2
    assert "APP" in result.stderr and "dualcorn.toml" in result.stderr


GUNICORN_CONF = """
import multiprocessing
bind = "0.0.0.0:8000"
workers = multiprocessing.cpu_count() * 2 + 1
threads = 4
timeout = 60
keepalive = 5
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
worker_class = "sync"

def on_starting(server):
    pass
"""


def test_a_gunicorn_conf_py_shows_the_toml_that_says_the_same(tmp_path: Path) -> None:
    write(tmp_path / "gunicorn.conf.py", GUNICORN_CONF)
    result = run_in(tmp_path, "-c", "gunicorn.conf.py", "main:app")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("dualcorn: error: gunicorn.conf.py is Python; dualcorn reads TOML")
    assert "Traceback" not in result.stderr
    toml_lines = [line for line in lines[1:] if not line.startswith("#")]
    assert 'bind = ["0.0.0.0:8000"]' in toml_lines
    assert "timeout-worker-healthcheck = 60" in toml_lines
    assert lines[-1] == "# not translated: workers, worker_class, on_starting"
    # What it printed is a dualcorn.toml that dualcorn reads.
    write(tmp_path / "dualcorn.toml", "\n".join(toml_lines) + "\n")
    os.remove(tmp_path / "gunicorn.conf.py")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        config = config_from_args(["main:app"])
    finally:
        os.chdir(cwd)
    assert config.bind == ("0.0.0.0:8000",) and config.threads == 4
    assert config.access_logfile == "-" and config.access_log_format is not None


def test_gunicorn_equivalent_of_an_unparsable_file(tmp_path: Path) -> None:
    text = gunicorn_equivalent(str(write(tmp_path / "g.py", "bind = (\n")))
    assert "dualcorn reads TOML" in text and "unreadable" in text


def test_the_file_serves_the_app_and_the_log_names_it(tmp_path: Path) -> None:
    write(tmp_path / "webapp.py", APP_SOURCE)
    write(tmp_path / "dualcorn.toml", 'app = "webapp:app"\nport = 0\nheader = "x-from: file"\n')
    with run_dualcorn(cwd=tmp_path) as server:
        response = httpx.get(f"{server.url}/hello", timeout=10)
        assert response.text == "GET /hello" and response.headers["x-from"] == "file"
        assert server.stop() == 0
    assert "Options read from dualcorn.toml" in server.stderr_text()


def test_the_file_with_workers(tmp_path: Path) -> None:
    write(tmp_path / "webapp.py", APP_SOURCE)
    write(tmp_path / "pyproject.toml", '[tool.dualcorn]\napp = "webapp:app"\nworkers = 2\n')
    with run_dualcorn("--port", "0", cwd=tmp_path) as server:
        assert httpx.get(f"{server.url}/w", timeout=10).text == "GET /w"
        assert server.stop(timeout=30) == 0
    stderr = server.stderr_text()
    assert "Options read from pyproject.toml [tool.dualcorn]" in stderr
    assert "starting 2 workers" in stderr


# --- The type checks are generic: a field holding dataclasses takes TOML tables -----------


@dataclasses.dataclass(frozen=True)
class Mount:
    path: str
    app: str
    interface: Literal["auto", "wsgi"] = "auto"
    threads: int | None = None


def test_arrays_of_tables_become_dataclasses() -> None:
    hint = tuple[Mount, ...]
    tables = [{"path": "/legacy", "app": "old:app", "interface": "wsgi", "threads": 4},
              {"path": "/api", "app": "new:app"}]  # fmt: skip
    assert convert(tables, hint, "f: mount") == (
        Mount("/legacy", "old:app", "wsgi", 4),
        Mount("/api", "new:app"),
    )
    with pytest.raises(ConfigFileError, match=r"f: mount\[0\]: unknown key 'pth'"):
        convert([{"pth": "/x", "app": "a:b"}], hint, "f: mount")
    with pytest.raises(ConfigFileError, match=r"f: mount\[0\]\.threads must be a whole number"):
        convert([{"path": "/x", "app": "a:b", "threads": "4"}], hint, "f: mount")
    with pytest.raises(ConfigFileError, match=r"f: mount\[0\]: .*'app'"):
        convert([{"path": "/x"}], hint, "f: mount")


def test_repo_root_has_no_config_file_that_would_change_other_tests() -> None:
    assert not (REPO_ROOT / "dualcorn.toml").exists()
    assert "[tool.dualcorn]" not in (REPO_ROOT / "pyproject.toml").read_text()


# --- [[mount]] tables and static entries, with two workers -----------------------------------

LEGACY_SOURCE = """
def app(environ, start_response):
    body = (environ["SCRIPT_NAME"] + "|" + environ["PATH_INFO"]).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""

MOUNTS_TOML = """
app = "webapp:app"
workers = 2
log-format = "json"
static = ["/static=public"]

[[mount]]
path = "/legacy"
app = "legacy:app"
interface = "wsgi"
threads = 2

[[mount]]
path = "/other"
app = "webapp:app"
"""


def test_mounts_and_static_from_the_file_with_two_workers(tmp_path: Path) -> None:
    import json

    write(tmp_path / "webapp.py", APP_SOURCE)
    write(tmp_path / "legacy.py", LEGACY_SOURCE)
    (tmp_path / "public").mkdir()
    write(tmp_path / "public" / "site.css", "body { color: red }\n")
    write(tmp_path / "dualcorn.toml", MOUNTS_TOML)
    with run_dualcorn("--port", "0", cwd=tmp_path) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/x").text == "GET /x"
            assert client.get("/legacy/page").text == "/legacy|/page"
            assert client.get("/other/y").text == "GET /other/y"
            css = client.get("/static/site.css")
            assert css.status_code == 200 and css.text == "body { color: red }\n"
        assert server.stop(timeout=30) == 0
    records = [json.loads(line) for line in server.stderr_text().splitlines()]
    mounts = {r["path"]: r["mount"] for r in records if r["logger"] == "dualcorn.access"}
    assert mounts == {"/x": "/", "/legacy/page": "/legacy", "/other/y": "/other",
                      "/static/site.css": "static:/static"}  # fmt: skip
    assert any(r["message"] == "Options read from dualcorn.toml" for r in records)


def test_a_mount_with_a_wrong_type_names_the_key(workdir: Path) -> None:
    write(workdir / "dualcorn.toml", '[[mount]]\npath = "/a"\napp = "x:y"\nthreads = "2"\n')
    with pytest.raises(ConfigFileError, match=r"dualcorn.toml: mount\[0\]\.threads must be"):
        config_from_args(["main:app"])
    write(workdir / "dualcorn.toml", 'mount = ["/a=x:y@wsgi:2", "nonsense"]\n')
    with pytest.raises(ConfigFileError, match=r"dualcorn.toml: mount\[1\]: mount: expected"):
        config_from_args(["main:app"])
