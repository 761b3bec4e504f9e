"""Adversarial probes of the default HTTP/2 path (``--http2-engine auto``, which is zttp when
installed), run on a real server on both engines (conftest parametrizes ``h2_engine``).

Each probe is one an attacker can send with raw frames (hyperframe and hpack: no client state
machine refuses it), and the answer must be the one RFC 9113 asks for on either engine: the
status the HTTP/1.1 table gives, then at most a reset with the right code, and a connection
that serves on.  The probes and what each engine answered are in docs/http2.md ("Where the
engines answer differently") where the engines may differ.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("h2")

from hyperframe.frame import DataFrame, Frame, HeadersFrame, RstStreamFrame

from tests.support import ServerThread
from tests.test_http2_probes import PROTOCOL_ERROR, Raw, goaway, resets, statuses

POST = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a.test")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers what reached it: the scope's headers, path and the body's length (JSON)."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    seen = {
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "path": scope["path"],
        "body": size,
    }
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(app) as running:
        yield running


def _stream_ends(sid: int) -> Any:
    def until(frame: Frame) -> bool:
        if frame.stream_id != sid:
            return False
        if isinstance(frame, RstStreamFrame):
            return True
        return isinstance(frame, (DataFrame, HeadersFrame)) and "END_STREAM" in frame.flags

    return until


def _body(frames: list[Frame], sid: int) -> bytes:
    data = [f for f in frames if isinstance(f, DataFrame) and f.stream_id == sid]
    return b"".join(bytes(f.data) for f in data)


# A malformed head (RFC 9113 8.1.1) whose DATA follows in the same read: the engine must still
# answer the stream itself (400, as HTTP/1.1 answers the same head) and reset it at most with
# PROTOCOL_ERROR.  zttp answered the DATA with RST_STREAM STREAM_CLOSED, once per DATA frame,
# and the 400 never went out.
MALFORMED_WITH_BODY = {
    "content-length-negative": [("content-length", "-1")],
    "content-length-list": [("content-length", "3, 3")],
    "content-length-plus": [("content-length", "+3")],
    "content-length-two": [("content-length", "3"), ("content-length", "4")],
    "upper-case-name": [("X-Foo", "1")],
    "transfer-encoding": [("transfer-encoding", "chunked")],
}


@pytest.mark.parametrize("ended", [True, False], ids=["ended", "still-sending"])
@pytest.mark.parametrize("case", sorted(MALFORMED_WITH_BODY))
def test_malformed_head_with_data_in_the_same_read(
    server: ServerThread, case: str, ended: bool
) -> None:
    with Raw(server.port) as client:
        data = DataFrame(1)
        data.data = b"abc"
        more = DataFrame(1)
        more.data = b"def"
        if ended:
            more.flags.add("END_STREAM")
        head = client.headers(1, POST + MALFORMED_WITH_BODY[case], end=False)
        client.send(head + data.serialize() + more.serialize())
        frames = client.frames(_stream_ends(1))
        frames += client.frames(lambda f: False, timeout=0.3)  # any reset that follows
        assert statuses(frames) == [b"400"]
        assert all(code == PROTOCOL_ERROR for _, code in resets(frames)), resets(frames)
        assert len(resets(frames)) <= 1
        assert goaway(frames) is None
        # The connection serves on, and its window was given back for the refused DATA.
        client.send(client.headers(3, POST, end=False))
        body = DataFrame(3)
        body.data = b"x" * 1000
        body.flags.add("END_STREAM")
        client.send(body)
        frames = client.frames(_stream_ends(3))
        assert statuses(frames) == [b"200"]
        assert json.loads(_body(frames, 3))["body"] == 1000


@pytest.mark.parametrize("ended", [True, False], ids=["ended", "still-sending"])
def test_empty_scheme_is_malformed(server: ServerThread, ended: bool) -> None:
    """RFC 9113 8.3.1: a request carries exactly one *valid* :scheme; an empty one is none
    (RFC 3986 3.1), so 400 on either engine (h2's path served it as "http")."""
    fields = [(":method", "GET"), (":scheme", ""), (":path", "/"), (":authority", "a.test")]
    with Raw(server.port) as client:
        client.send(client.headers(1, fields, end=ended))
        frames = client.frames(_stream_ends(1))
        assert statuses(frames) == [b"400"]
        if not ended:
            frames += client.frames(lambda f: isinstance(f, RstStreamFrame))
            assert resets(frames) == [(1, PROTOCOL_ERROR)]
        client.send(client.headers(3, POST))
        assert statuses(client.frames(_stream_ends(3))) == [b"200"]


# Differences docs/http2.md ("Where the engines answer differently") lists, pinned per engine.


def test_trailers_with_framing_fields(server: ServerThread, h2_engine: str) -> None:
    """RFC 9110 6.5.1 keeps Content-Length and Host out of trailers: zttp calls such trailers
    malformed (reset, PROTOCOL_ERROR); h2 discards request trailers and serves."""
    with Raw(server.port) as client:
        data = DataFrame(1)
        data.data = b"abc"
        head = client.headers(1, POST, end=False)  # encoded first: HPACK's order is the wire's
        trailers = HeadersFrame(1)
        trailers.data = client.encoder.encode([("content-length", "99")], huffman=False)
        trailers.flags = {"END_HEADERS", "END_STREAM"}
        client.send(head, data, trailers)
        frames = client.frames(_stream_ends(1))
        if h2_engine == "zttp":
            assert statuses(frames) == []
            assert resets(frames) == [(1, PROTOCOL_ERROR)]
        else:
            assert statuses(frames) == [b"200"]
            assert json.loads(_body(frames, 1))["body"] == 3
        client.send(client.headers(3, POST))
        assert statuses(client.frames(_stream_ends(3))) == [b"200"]


def test_data_past_content_length(server: ServerThread) -> None:
    """RFC 9113 8.1.1: DATA past Content-Length is malformed; the app never sees it and the
    stream is reset with PROTOCOL_ERROR.  Nothing may follow the reset on that stream (5.1:
    closed); zttp's path reported the stream twice and sent a 400 after its reset."""
    with Raw(server.port) as client:
        data = DataFrame(1)
        data.data = b"abc"
        data.flags.add("END_STREAM")
        client.send(client.headers(1, [*POST, ("content-length", "2")], end=False), data)
        frames = client.frames(lambda f: isinstance(f, RstStreamFrame))
        frames += client.frames(lambda f: False, timeout=0.5)  # anything after the reset
        assert resets(frames) == [(1, PROTOCOL_ERROR)]
        assert [f for f in frames if f.stream_id == 1 and not isinstance(f, RstStreamFrame)] == []
        client.send(client.headers(3, POST))
        assert statuses(client.frames(_stream_ends(3))) == [b"200"]
