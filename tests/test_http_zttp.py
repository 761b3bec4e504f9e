"""``--http zttp``: zttp tokenizes the header fields of a real server (issue 15).

The in-memory HTTP/1.1 suite (tests/test_http.py, test_policy.py, test_half_close.py) and the
differential fuzzer already run on zttp beside h11 and httptools (tests/memconn.py's PARSERS).
These tests start the real server with ``http="zttp"`` on both loops and talk to it with real
clients: keep-alive, bodies both ways, pipelining, a refused head, WebSocket, and the command
line choice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dualcorn import Config
from dualcorn.errors import ConfigError
from dualcorn.protocols import protocol_class
from tests.helpers import run_dualcorn
from tests.rawhttp import RawClient
from tests.support import ServerThread

pytest.importorskip("zttp")
pytestmark = pytest.mark.timeout(60)


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message.get("text", "")[::-1]})
        await send({"type": "websocket.close"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "headers": [[k.decode(), v.decode("latin-1")] for k, v in scope["headers"]],
        "body": len(body),
    }
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


@pytest.fixture(params=["asyncio", "uvloop"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    with ServerThread(echo, http="zttp", loop=request.param) as running:
        yield running


def test_the_protocol_is_zttp() -> None:
    assert protocol_class("zttp").__name__ == "ZttpProtocol"
    assert Config(app=echo, http="zttp").http == "zttp"
    with pytest.raises(ConfigError):
        Config(app=echo, http="zttp2")  # type: ignore[arg-type]


def test_keep_alive_fields_and_bodies(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url) as client:
        for n in range(5):
            answer = client.get(f"/a/{n}?x={n}", headers={"X-Thing": f"v{n}"}).json()
            assert answer["path"] == f"/a/{n}" and answer["query"] == f"x={n}"
            assert ["x-thing", f"v{n}"] in answer["headers"]  # the name in lower case
        sent = client.post("/upload", content=b"x" * 100_000).json()
        assert sent["body"] == 100_000
        chunks = client.post("/chunked", content=iter([b"a" * 1000] * 50)).json()
        assert chunks["body"] == 50_000
        assert ["transfer-encoding", "chunked"] in chunks["headers"]


def test_pipelined_requests_are_answered_in_order(server: ServerThread) -> None:
    with RawClient(server.port) as client:
        client.send(
            b"GET /one HTTP/1.1\r\nHost: a\r\nX-OWS: \t v w \t\r\n\r\n"
            b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        answers = [json.loads(client.read_response().body) for _ in range(3)]
        assert [a["path"] for a in answers] == ["/one", "/two", "/three"]
        assert ["x-ows", "v w"] in answers[0]["headers"]  # RFC 9110 5.5: OWS is not the value
        assert answers[1]["body"] == 5
        assert client.is_closed_by_server(timeout=5)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n", 400),  # space before the colon
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", 400),  # control byte in a value
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  # the policy: one Host
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", 400),
    ],
)
def test_a_refused_head_gets_its_status_and_a_close(
    server: ServerThread, head: bytes, status: int
) -> None:
    with RawClient(server.port) as client:
        client.send(head + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
        response = client.read_response()
        assert response.status == status
        assert client.is_closed_by_server(timeout=5)


def test_websocket_upgrade(server: ServerThread) -> None:
    websockets = pytest.importorskip("websockets.asyncio.client")

    async def talk() -> str:
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
            await ws.send("hello")
            return str(await asyncio.wait_for(ws.recv(), 10))

    assert asyncio.run(talk()) == "olleh"


def test_the_command_line_serves_with_zttp(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'hi'})\n"
    )
    with run_dualcorn("hello:app", "--port", "0", "--http", "zttp", cwd=tmp_path) as server:
        assert httpx.get(server.url).text == "hi"
