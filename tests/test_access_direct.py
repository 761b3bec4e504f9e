"""The access log's direct path prints what logging prints, and steps aside for other set-ups.

dualcorn writes its access line straight to its own handler's stream when the
``dualcorn.access`` logger is as the server configured it (dualcorn.protocols.logline); a filter,
another handler or another formatter sends every record through :mod:`logging` instead.  Each
test runs the same requests through the in-memory connection twice, once on each path, and
compares the files line by line (durations masked), over HTTP/1.1 and over HTTP/2 (the
streams of one h2c connection, tests/h2memconn.py).  A real server writes the same lines.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dualcorn import Config
from dualcorn.logs import configure_logging
from tests.h2memconn import H2Wire
from tests.helpers import run_dualcorn
from tests.memconn import MemoryConnection

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /path?x=1&y=%20 HTTP/1.1\r\nHost: a\r\nUser-Agent: t/1\r\nReferer: r\r\n\r\n",
    b"POST /form HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /missing\x1b HTTP/1.1\r\nHost: a\r\n\r\n",  # refused (400): no access line
    b"GET /404 HTTP/1.1\r\nHost: a\r\n\r\n",
]
DURATION = re.compile(r"\d+\.\d+ms|\d+\.\d{6}")
GUNICORN = '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(m)s %(U)s %(q)s %(L)s'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    status = 404 if scope["path"] == "/404" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    """The ``dualcorn.access`` logger, restored after the test (configure_logging changes it)."""
    logger = logging.getLogger("dualcorn.access")
    saved = (list(logger.handlers), list(logger.filters), logger.level, logger.propagate)
    yield logger
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:], logger.filters[:], logger.level, logger.propagate = saved


# The same requests as HTTP/2 streams on one h2c connection (tests/h2memconn.py); no refused
# one, since HTTP/2 logs its refusals (protocols/http2/connection.py).
H2_REQUESTS: list[tuple[bytes, str, list[tuple[bytes, bytes]], bytes | None]] = [
    (b"GET", "/", [], None),
    (b"GET", "/path?x=1&y=%20", [(b"user-agent", b"t/1"), (b"referer", b"r")], None),
    (b"POST", "/form", [], b"abc"),
    (b"GET", "/404", [], None),
]


async def _serve(path: Path, *, h2: bool = False, **options: Any) -> list[str]:
    if h2:
        conn = MemoryConnection("h11", app, access_log=True, **options)
        async with H2Wire(conn) as client:
            for method, target, fields, body in H2_REQUESTS:
                await client.request(target, method=method, headers=fields, body=body)
        return _lines(path)
    for raw in REQUESTS:  # one connection each: the refused request closes its own
        async with MemoryConnection("h11", app, access_log=True, **options) as conn:
            await conn.send(raw)
    return _lines(path)


def _lines(path: Path, mask: bool = True) -> list[str]:
    text = path.read_text()
    return (DURATION.sub("D", text) if mask else text).splitlines()


class Seen(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return True


@pytest.mark.parametrize("h2", [False, True], ids=["http1", "h2"])
@pytest.mark.parametrize(
    ("options", "show_pid"),
    [({}, False), ({}, True), ({"access_log_format": GUNICORN}, False)],
    ids=["default", "with-pid", "gunicorn-format"],
)
async def test_the_direct_path_prints_what_logging_prints(
    tmp_path: Path, access_logger: logging.Logger, options: dict[str, Any], show_pid: bool,
    h2: bool,
) -> None:  # fmt: skip
    direct, through_logging = tmp_path / "direct.log", tmp_path / "logging.log"
    config = Config(app=app, access_logfile=str(direct), log_level="info", **options)
    configure_logging(config, show_pid=show_pid)
    lines = await _serve(direct, h2=h2, **options)
    assert len(lines) == 4, lines  # the 400 refusal of a request line is not an access line
    configure_logging(
        Config(app=app, access_logfile=str(through_logging), log_level="info", **options),
        show_pid=show_pid,
    )
    seen = Seen()
    access_logger.addFilter(seen)  # any filter: every record goes through logging
    assert await _serve(through_logging, h2=h2, **options) == lines
    assert len(seen.records) == 4
    version, form = ("HTTP/2.0", "HTTP/2.0") if h2 else ("HTTP/1.1", "HTTP/1.0")
    if not options:
        prefix = "INFO:    " + (f"[{seen.records[0].process}] " if show_pid else " ")
        assert lines[1] == prefix + f'127.0.0.1:50000 - "GET /path?x=1&y=%20 {version}" 200 5 D'
        assert lines[2].endswith(f'"POST /form {form}" 200 5 D')
        assert lines[3].endswith(f'"GET /404 {version}" 404 5 D')
    else:
        assert lines[1] == (
            f'127.0.0.1 - - "GET /path?x=1&y=%20 {version}" 200 5 "r" "t/1" GET /path x=1&y=%20 D'
        )


async def test_other_handlers_and_propagation_get_every_record(
    tmp_path: Path, access_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "access.log"
    configure_logging(Config(app=app, access_logfile=str(path), log_level="info"))
    access_logger.propagate = True  # as a host program may set it: the root's handlers too
    caplog.set_level(logging.INFO, logger="dualcorn.access")
    lines = await _serve(path)
    assert len(lines) == 4
    records = [r for r in caplog.records if r.name == "dualcorn.access"]
    assert [DURATION.sub("D", r.getMessage()) for r in records] == [
        line.removeprefix("INFO:     ") for line in lines
    ]
    # The record names the code that logged the line, not the access logger's wrapper.
    assert {r.funcName for r in records} == {"_finish"}


async def test_json_lines_take_the_logging_path(
    tmp_path: Path, access_logger: logging.Logger
) -> None:
    import json

    path = tmp_path / "access.json"
    configure_logging(
        Config(app=app, access_logfile=str(path), log_level="info", log_format="json")
    )
    await _serve(path)
    records = [json.loads(line) for line in _lines(path, mask=False)]
    assert [r["status"] for r in records] == [200, 200, 200, 404]


async def test_a_broken_stream_is_logging_s_error_not_the_request_s(
    tmp_path: Path, access_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "access.log"
    configure_logging(Config(app=app, access_logfile=str(path), log_level="info"))
    handler: Any = access_logger.handlers[0]
    handler.stream.close()
    try:
        async with MemoryConnection("h11", app, access_log=True) as conn:
            await conn.send(REQUESTS[0])
            [response] = conn.responses()
    finally:
        handler.stream = None  # closed already: nothing for the fixture's close() to flush
    assert response.status == 200 and response.body == b"hello"
    assert "--- Logging error ---" in capsys.readouterr().err  # logging.raiseExceptions


def test_a_real_server_writes_one_line_per_response(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'hi'})\n"
    )
    log = tmp_path / "access.log"
    args = ["hello:app", "--port", "0", "--access-logfile", str(log), "--log-level", "info"]
    with run_dualcorn(*args, cwd=tmp_path) as server, httpx.Client() as client:
        for n in range(20):
            assert client.get(f"{server.url}/n{n}?q={n}").text == "hi"
        deadline = time.monotonic() + 30
        while len(log.read_text().splitlines()) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = log.read_text().splitlines()
    assert len(lines) == 20
    for n, line in enumerate(lines):
        assert re.fullmatch(
            rf'INFO:     127\.0\.0\.1:\d+ - "GET /n{n}\?q={n} HTTP/1\.1" 200 2 \d+\.\dms', line
        ), line


class CountingStream:
    """A file's stand-in that records each write and flush (the handler's stream)."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        self.flushes += 1


def _entries(n: int) -> list[Any]:
    from dualcorn.access_format import AccessEntry, AccessFormat

    scope = {"method": "GET", "http_version": "1.1", "raw_path": b"/", "query_string": b"",
             "client": ("127.0.0.1", 1)}  # fmt: skip
    return [AccessEntry(AccessFormat(), {**scope, "raw_path": b"/%d" % i}, 200, 2, 0.0)
            for i in range(n)]  # fmt: skip


async def test_the_lines_of_one_loop_iteration_leave_in_one_write(
    tmp_path: Path, access_logger: logging.Logger
) -> None:
    import asyncio
    import threading

    from dualcorn.protocols.logline import AccessLogger

    configure_logging(Config(app=app, access_logfile=str(tmp_path / "a.log"), log_level="info"))
    handler: Any = access_logger.handlers[0]
    handler.stream.close()
    handler.stream = stream = CountingStream()
    logger = AccessLogger(access_logger)
    for entry in _entries(3):
        logger.info("%s", entry)
    assert stream.writes == []  # not before this iteration ends...
    await asyncio.sleep(0)
    assert stream.writes == [  # ...then all of it at once, in order, flushed
        "".join(f'INFO:     127.0.0.1:1 - "GET /{i} HTTP/1.1" 200 2 0.0ms\n' for i in range(3))
    ]
    assert stream.flushes == 1
    # Off the event loop (no iteration to wait for) a line is written at once.
    thread = threading.Thread(target=logger.info, args=("%s", _entries(1)[0]))
    thread.start()
    thread.join(10)
    assert stream.writes[1:] == ['INFO:     127.0.0.1:1 - "GET /0 HTTP/1.1" 200 2 0.0ms\n']
    handler.stream = None  # nothing for the fixture's close() to flush


def test_an_error_after_a_response_prints_after_its_access_line(tmp_path: Path) -> None:
    """The access line is held for the end of the loop iteration; an error logged meanwhile
    (the app fails once it has answered) still prints after it on the shared stderr."""
    (tmp_path / "late.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'hi'})\n"
        "    raise RuntimeError('failed after answering ' + scope['path'])\n"
    )
    args = ["late:app", "--port", "0", "--log-level", "info", "--no-use-colors"]
    with run_dualcorn(*args, cwd=tmp_path) as server, httpx.Client() as client:
        for n in range(3):
            assert client.get(f"{server.url}/n{n}").text == "hi"
        assert server.stop(timeout=30) == 0
        err = server.stderr_text()
    order = [
        ("access", m.group(1)) if (m := re.search(r'"GET (/n\d) HTTP/1\.1" 200', line)) else
        ("error", m.group(1)) if (m := re.search(r"failed after answering (/n\d)", line)) else None
        for line in err.splitlines()
    ]  # fmt: skip
    assert [x for x in order if x] == [
        (kind, f"/n{n}") for n in range(3) for kind in ("access", "error")
    ], err
