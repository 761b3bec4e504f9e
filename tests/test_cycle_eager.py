"""Requests whose app answers at once, heads split across reads and pipelined behind them:
every request is answered once, in order, and no task is left behind in the server's set.

Written for an eager start of the cycle (Python 3.12+ ``eager_start``: the app answering while
the parser is still framing the read that carried the head), which was measured and dropped
(benchmarks/results/asgi-speed.md); they guard the framing of such bursts whatever the start.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import run_dualcorn
from tests.memconn import MemoryConnection
from tests.rawhttp import RawClient

pytestmark = pytest.mark.timeout(60)


async def echo_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/wait":
        await asyncio.sleep(0.01)  # a real wait: the cycle goes on in its task
    if scope["path"] == "/boom":
        raise RuntimeError("fails before answering")
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra)


@pytest.mark.parametrize("parser", ["h11", "httptools"])
async def test_a_split_head_then_pipelined_requests_are_answered_once_each(parser: str) -> None:
    # The first head arrives in two reads (the second read goes through the connection's
    # buffer), with two more requests behind it in the same read.
    first = get("/a")
    reads = [first[:20], first[20:] + get("/wait") + get("/c") + get("/d")[:9], get("/d")[9:]]
    async with MemoryConnection(parser, echo_path) as conn:
        await conn.send(reads)
        assert [r.body for r in conn.responses()] == [b"/a", b"/wait", b"/c", b"/d"]
        assert not conn.closed
        assert not conn.state.tasks  # every cycle's task left the set, eager or not


@pytest.mark.parametrize("parser", ["h11", "httptools"])
async def test_many_quick_requests_on_one_connection_leave_no_task(parser: str) -> None:
    async with MemoryConnection(parser, echo_path) as conn:
        for n in range(50):
            await conn.send(get(f"/n{n}"))
        await conn.send(b"".join(get(f"/p{n}") for n in range(20)))  # pipelined, one read
        bodies = [r.body for r in conn.responses()]
        assert bodies == [b"/n%d" % n for n in range(50)] + [b"/p%d" % n for n in range(20)]
        assert not conn.state.tasks
        assert conn.protocol.requests_served == 70


async def test_an_app_failing_at_once_gets_a_500_and_the_connection_closes() -> None:
    async with MemoryConnection("httptools", echo_path) as conn:
        await conn.send(get("/boom") + get("/never"))
        responses = conn.responses()
        assert [r.status for r in responses] == [500]
        assert conn.closed
        assert not conn.state.tasks


async def test_connection_close_on_a_quick_answer_ends_the_connection() -> None:
    async with MemoryConnection("httptools", echo_path) as conn:
        await conn.send(get("/last", b"Connection: close\r\n") + get("/never"))
        assert [r.body for r in conn.responses()] == [b"/last"]
        assert conn.closed


def test_a_real_server_answers_a_split_pipelined_burst_in_order(tmp_path: Any) -> None:
    (tmp_path / "echo.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    body = scope['path'].encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200,\n"
        "                'headers': [(b'content-length', b'%d' % len(body))]})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n"
    )
    with run_dualcorn("echo:app", "--port", "0", cwd=tmp_path) as server:
        assert server.port is not None
        with RawClient(server.port, timeout=10) as client:
            burst = b"".join(get(f"/r{n}") for n in range(10))
            client.send(burst[:7])
            client.send(burst[7:])
            bodies = [client.read_response().body for _ in range(10)]
            assert bodies == [b"/r%d" % n for n in range(10)]
            client.send(get("/after"))
            assert client.read_response().body == b"/after"
