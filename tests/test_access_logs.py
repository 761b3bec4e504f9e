"""Access-log formats: gunicorn's atoms give gunicorn's lines; --log-format json parses.

The gunicorn test runs the real gunicorn (when installed) and the real dualcorn on the same WSGI
app, sends both the same requests, and compares the lines they print, with the time masked.
Over HTTP/2 (httpx ``http2=True``, h2c) the same requests give the same lines but for the
protocol, which is ``HTTP/2.0`` in the request line and the ``%(H)s`` atom; the JSON line's
``protocol`` says the same.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from dualcorn import Config
from dualcorn.access_format import REQUEST_ID_KEY, AccessEntry, compile_format
from dualcorn.errors import ConfigError
from tests.helpers import child_env, run_dualcorn

pytestmark = pytest.mark.timeout(120)

# From gunicorn's documentation of access_log_format (its default).
GUNICORN_DOCS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
# Every atom whose value does not depend on timing or the process.
EVERY_STABLE_ATOM = (
    GUNICORN_DOCS_FORMAT + " %(m)s %(U)s %(q)s %(H)s %(B)s %({x-custom}i)s %({X-Out}o)s "
    "%({content-type}o)s %({absent}i)s %({REMOTE_ADDR}e)s %({query_string}e)s %(unknown)s"
)
CLF_TIME = re.compile(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]")

WSGI_APP = """
def app(environ, start_response):
    body = b"" if environ["PATH_INFO"] == "/empty" else b"hello world"
    status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
    start_response(status, [("Content-Type", "text/plain"), ("X-Out", 'say "hi"')])
    return [body]
"""

ASGI_APP = """
import logging

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom\\nwith a second line")
    if scope["path"] == "/warn":
        logging.getLogger("myapp").warning("an app's own warning")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
"""


class LineReader:
    """Collects a process's output lines in threads, so neither pipe fills up."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(s,), daemon=True)
                        for s in (proc.stdout, proc.stderr)]  # fmt: skip
        for thread in self.threads:
            thread.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in iter(stream.readline, ""):
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str], count: int, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [line for line in self.lines if pattern.search(line)]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"wanted {count} lines matching {pattern.pattern}: {self.lines}")


@contextlib.contextmanager
def running(
    command: list[str], cwd: Path, ready: re.Pattern[str]
) -> Iterator[tuple[int, LineReader]]:
    proc = subprocess.Popen(command, cwd=cwd, env=child_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        reader = LineReader(proc)
        line = reader.wait_for(ready, 1, timeout=30)[0]
        match = ready.search(line)
        assert match is not None
        yield int(match.group(1)), reader
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


BOB = "Basic " + base64.b64encode(b"bob:pw").decode()
REQUESTS: list[tuple[str, str, dict[str, str], str]] = [
    ("GET", "/a/b%20c?x=1&y=%22", {"Referer": "http://example.com/", "User-Agent": 'ua "q"',
                                   "X-Custom": "c1", "Authorization": BOB}, "1.1"),
    ("GET", "/empty", {"User-Agent": "client/1"}, "1.1"),
    ("GET", "/caf%C3%A9/%C3%BC?q=%C3%A9", {}, "1.1"),  # PATH_INFO is latin-1, as in PEP 3333
    ("HEAD", "/head?q", {}, "1.1"),
    ("POST", "/missing", {"Content-Length": "3"}, "1.1"),
    ("GET", "/ten", {}, "1.0"),
]  # fmt: skip


def send_requests(port: int) -> None:
    for method, target, headers, version in REQUESTS:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        if version == "1.0":
            conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"  # type: ignore[attr-defined]
        conn.request(method, target, body=b"abc" if method == "POST" else None, headers=headers)
        conn.getresponse().read()
        conn.close()


@pytest.mark.parametrize("fmt", [GUNICORN_DOCS_FORMAT, EVERY_STABLE_ATOM])
def test_a_gunicorn_format_gives_the_line_gunicorn_gives(tmp_path: Path, fmt: str) -> None:
    pytest.importorskip("gunicorn", reason="gunicorn is not installed: nothing to compare with")
    (tmp_path / "wsgiapp.py").write_text(WSGI_APP)
    marker = re.compile(r'"(GET|HEAD|POST) /')
    gunicorn = [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", "--access-logfile", "-",
                "--access-logformat", fmt, "wsgiapp:app"]  # fmt: skip
    with running(gunicorn, tmp_path, re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")) as (
        port,
        reader,
    ):
        send_requests(port)
        expected = reader.wait_for(marker, len(REQUESTS))
    dualcorn = [sys.executable, "-m", "dualcorn", "--port", "0", "--access-logfile", "-",
                "--access-logformat", fmt, "wsgiapp:app"]  # fmt: skip
    with running(dualcorn, tmp_path, re.compile(r"running on http://127\.0\.0\.1:(\d+)")) as (
        port,
        reader,
    ):
        send_requests(port)
        got = reader.wait_for(marker, len(REQUESTS))
    assert [CLF_TIME.sub("[TIME]", line) for line in got] == [
        CLF_TIME.sub("[TIME]", line) for line in expected
    ]
    assert all(CLF_TIME.search(line) for line in got)


def test_http2_lines_differ_only_by_the_protocol(tmp_path: Path) -> None:
    """The same requests over HTTP/1.1 and HTTP/2 to one dualcorn: every atom agrees but the
    protocol, HTTP/2.0 in "%(r)s" and "%(H)s" (gunicorn's format, dualcorn's request line)."""
    (tmp_path / "wsgiapp.py").write_text(WSGI_APP)
    marker = re.compile(r'"(GET|HEAD|POST) /')
    dualcorn = [sys.executable, "-m", "dualcorn", "--port", "0", "--access-logfile", "-",
                "--access-logformat", EVERY_STABLE_ATOM, "wsgiapp:app"]  # fmt: skip
    requests = [(method, target, headers) for method, target, headers, version in REQUESTS
                if version == "1.1"]  # fmt: skip
    with running(dualcorn, tmp_path, re.compile(r"running on http://127\.0\.0\.1:(\d+)")) as (
        port,
        reader,
    ):
        for h2 in (False, True):
            with httpx.Client(http1=not h2, http2=h2, timeout=10) as client:
                for method, target, headers in requests:
                    body = b"abc" if method == "POST" else None
                    fields = {k: v for k, v in headers.items() if k != "Content-Length"}
                    url = f"http://127.0.0.1:{port}{target}"
                    response = client.request(method, url, content=body, headers=fields)
                    assert response.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
        lines = reader.wait_for(marker, 2 * len(requests))
    over_h1, over_h2 = lines[: len(requests)], lines[len(requests) :]
    masked = [CLF_TIME.sub("[TIME]", line) for line in over_h1]
    expected = [line.replace("HTTP/1.1", "HTTP/2.0") for line in masked]
    assert [CLF_TIME.sub("[TIME]", line) for line in over_h2] == expected
    assert all(line.count("HTTP/2.0") == 2 for line in over_h2)  # %(r)s and %(H)s


# --- Atoms, one by one ------------------------------------------------------------------


def entry(fmt: str, duration: float = 1.234567, **scope: Any) -> AccessEntry:
    base: dict[str, Any] = {
        "type": "http", "method": "GET", "http_version": "1.1", "path": "/app/x y",
        "raw_path": b"/app/x%20y", "root_path": "/app", "query_string": b"a=1",
        "headers": [(b"user-agent", b"ua"), (b"x-twice", b"1"), (b"x-twice", b"2")],
        "client": ("10.1.2.3", 4444), "server": ("127.0.0.1", 8000), "scheme": "https",
        "extensions": {},
    }  # fmt: skip
    base.update(scope)
    return AccessEntry(compile_format(fmt), base, 201, 0, duration,
                       response_headers=[(b"Content-Type", b"text/html")])  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        ("%(h)s %(l)s %(u)s", "10.1.2.3 - -"),
        ('"%(r)s"', '"GET /app/x%20y?a=1 HTTP/1.1"'),
        ("%(s)s %(b)s %(B)s", "201 0 0"),  # gunicorn prints 0 bytes as 0, not CLF's "-"
        ("%(m)s %(U)s %(q)s %(H)s", "GET /x y a=1 HTTP/1.1"),  # U is PATH_INFO, under root_path
        ("%(T)s %(D)s %(M)s %(L)s", "1 1234567 1234 1.234567"),
        ("%({x-twice}i)s %({USER-AGENT}i)s %({content-type}o)s", "2 ua text/html"),
        ("%({script_name}e)s %({wsgi.url_scheme}e)s %({http_x_twice}e)s", "/app https 2"),
        ("%({server_port}e)s %({remote_port}e)s %({nothing}e)s", "8000 4444 -"),
        ("%(f)s %(a)s %(zz)s %({x}o)s", "- ua - -"),
        ("%(B)05d %(T)d", "00000 1"),  # gunicorn's numbers are numbers (s is text, as there)
        ("100%% %(h)s", "100% 10.1.2.3"),
    ],
)
def test_atoms(fmt: str, line: str) -> None:
    assert str(entry(fmt)) == line


def test_time_and_pid_atoms() -> None:
    text = str(entry("%(t)s %(p)s"))
    assert CLF_TIME.fullmatch(text.split(" <")[0])
    assert text.endswith(f" <{os.getpid()}>")


def test_request_text_is_escaped_so_it_cannot_forge_lines() -> None:
    scope = {"raw_path": b'/a"\x1b[31m\n', "query_string": b"", "path": '/a"\x1b[31m\n'}
    assert (
        str(entry('"%(r)s" %(U)s', **scope))
        == '"GET /a\\"\\x1b[31m\\x0a HTTP/1.1" /a\\"\\x1b[31m\\x0a'
    )


def test_basic_auth_user() -> None:
    auth = b"Basic " + base64.b64encode("zoë:secret".encode())
    assert str(entry("%(u)s", headers=[(b"authorization", auth)])) == "zoë"
    assert str(entry("%(u)s", headers=[(b"authorization", b"Basic !!!")])) == "-"
    assert str(entry("%(u)s", headers=[(b"authorization", b"Bearer abc")])) == "-"


def test_only_the_atoms_a_format_names_are_computed() -> None:
    fmt = compile_format('%(h)s "%(r)s" %(h)s')
    assert [key for key, _ in fmt.atoms] == ["h", "r"]  # type: ignore[attr-defined]


def test_the_request_id_atom() -> None:
    scope = {"extensions": {REQUEST_ID_KEY: {"id": "abc123"}}}
    assert str(entry("%({dualcorn.request_id}e)s", **scope)) == "abc123"
    assert compile_format("%({dualcorn.request_id}e)s").uses_request_id
    assert not compile_format("%(h)s").uses_request_id


@pytest.mark.parametrize("fmt", ["%(h)s %", "%(h)d", "%(h"])
def test_a_malformed_format_is_refused_at_start(fmt: str) -> None:
    with pytest.raises(ConfigError, match="access_log_format"):
        Config(app="main:app", access_log_format=fmt)


def test_the_default_line_is_unchanged() -> None:
    line = AccessEntry(compile_format(None), entry("").scope, 200, 12, 0.00042)
    assert str(line) == '10.1.2.3:4444 - "GET /app/x%20y?a=1 HTTP/1.1" 200 12 0.4ms'


# --- JSON lines ---------------------------------------------------------------------------


def parse_every_line(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        record = json.loads(line)  # every line, whatever wrote it
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_json_lines_from_a_real_server(tmp_path: Path) -> None:
    (tmp_path / "jsonapp.py").write_text(ASGI_APP)
    args = ("--port", "0", "--log-format", "json", "--request-id-header", "X-Request-ID",
            "jsonapp:app")  # fmt: skip
    with run_dualcorn(*args, cwd=tmp_path) as server:
        ok = httpx.get(f"{server.url}/ok?x=1", headers={"user-agent": "tester/1"}, timeout=10)
        assert ok.status_code == 200
        assert httpx.get(f"{server.url}/boom", timeout=10).status_code == 500
        assert httpx.get(f"{server.url}/warn", timeout=10).status_code == 200
        with httpx.Client(http1=False, http2=True, timeout=10) as h2c:
            over_h2 = h2c.get(f"{server.url}/ok?h2")
        assert over_h2.http_version == "HTTP/2" and over_h2.status_code == 200
        assert server.stop() == 0
    records = parse_every_line(server.stderr_text() + server.stdout_text())
    for record in records:
        assert {"time", "level", "logger", "pid", "message"} <= record.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
        assert record["pid"] == server.proc.pid
    access = [r for r in records if r["logger"] == "dualcorn.access"]
    assert [(r["path"], r["status"]) for r in access] == [("/ok", 200), ("/boom", 500),
                                                         ("/warn", 200), ("/ok", 200)]  # fmt: skip
    first = access[0]
    assert first["method"] == "GET" and first["query"] == "x=1" and first["bytes"] == 2
    assert first["client"] == "127.0.0.1" and first["protocol"] == "HTTP/1.1"
    assert first["user_agent"] == "tester/1" and first["type"] == "http"
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["request_id"] == ok.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first["request_id"])
    last = access[-1]
    assert last["protocol"] == "HTTP/2.0" and last["query"] == "h2" and last["bytes"] == 2
    assert last["request_id"] == over_h2.headers["x-request-id"]
    (error,) = [r for r in records if r["level"] == "ERROR"]
    assert error["message"] == "Exception in ASGI application"
    assert error["request_id"] == access[1]["request_id"]  # the 500's line and its error
    assert "Traceback" in error["exc_info"] and "RuntimeError: boom" in error["exc_info"]
    (warning,) = [r for r in records if r["logger"] == "myapp"]
    assert warning["message"] == "an app's own warning" and warning["level"] == "WARNING"
    assert any(r["message"].startswith("dualcorn running on") for r in records)


def test_json_startup_failure_with_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import nothing_by_this_name\n")
    result = subprocess.run(
        [sys.executable, "-m", "dualcorn", "--log-format", "json", "broken:app"],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3
    records = parse_every_line(result.stderr + result.stdout)
    assert records[-1]["level"] == "ERROR"
    assert any("nothing_by_this_name" in (r.get("exc_info") or r["message"]) for r in records)


def test_json_and_a_log_config_do_not_mix() -> None:
    with pytest.raises(ConfigError, match="log_format json and log_config"):
        Config(app="main:app", log_format="json", log_config="logging.json")
