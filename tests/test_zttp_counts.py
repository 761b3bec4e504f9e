"""What zttp 0.0.35 counts over a connection's life, measured on a real server (layer 3).

dualcorn.protocols.http2.zttp_counts mirrors two fixed counts of zttp's: 4,096 streams opened
and 256 streams reset per connection, each a connection error (GOAWAY ENHANCE_YOUR_CALM) when
passed, however slowly.  Here the zttp engine's graceful end is moved out of reach, so each
test sees zttp's own answer: which resets it counts, and that the 257th counted one ends the
connection.  A zttp that counts otherwise fails here first (then zttp_counts.py and the
engine's counting in engine_zttp.py must follow it).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("zttp")
pytest.importorskip("h2")

from hyperframe.frame import RstStreamFrame

from dualcorn.protocols.http2 import engine_zttp
from dualcorn.protocols.http2.events import CANCEL, ENHANCE_YOUR_CALM
from dualcorn.protocols.http2.zttp_counts import RESETS_PER_CONNECTION
from tests.h2client import H2Client
from tests.support import ServerThread

ROUNDS = RESETS_PER_CONNECTION + 20


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/hold answers its head and waits for the disconnect; /read reads the body first."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/hold":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    if scope["path"] == "/read":
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body"):
                break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _rst(client: H2Client, sid: int) -> None:
    """RST_STREAM CANCEL as raw bytes: h2 refuses to reset a stream it thinks closed."""
    frame = RstStreamFrame(sid)
    frame.error_code = CANCEL
    client.send_raw(frame.serialize())


def _sync(client: H2Client) -> None:
    """A PING round trip: the server has read everything sent before it (RFC 9113 6.7),
    unless it ended the connection first."""
    data = b"%08d" % len(client.pings)
    client.conn.ping(data)
    client.flush()
    while data not in client.pings and client.goaway is None and client.receive_once():
        pass


def _cancel_running(c: H2Client) -> None:
    sid = c.request("/hold")
    while not c.streams[sid].data and not c.streams[sid].done:
        c.receive_once()
    c.conn.reset_stream(sid, CANCEL)
    c.flush()


def _cancel_while_sending(c: H2Client) -> None:
    sid = c.request("/read", body=b"a", end=False)
    c.conn.reset_stream(sid, CANCEL)
    c.flush()


def _malformed(c: H2Client) -> None:  # an upper-case field name (RFC 9113 8.2.1)
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
              (b":authority", b"x"), (b"Bad", b"1")]  # fmt: skip
    result = c.wait(c.raw_headers(fields))[0]
    assert c.goaway is not None or result.status == 400


def _body_short_of_content_length(c: H2Client) -> None:
    sid = c.request("/read", body=b"a", headers=[("content-length", "5")])
    c.wait(sid)


def _cancel_answered(c: H2Client) -> None:
    sid = c.request("/")
    c.wait(sid)
    _rst(c, sid)


def _cancel_after_the_response_while_sending(c: H2Client) -> None:
    # The app answers without reading; the server resets the stream NO_ERROR (RFC 9113 8.1).
    sid = c.request("/", body=b"a", end=False)
    while not c.streams[sid].done:
        c.receive_once()
    _rst(c, sid)


def _refused_while_sending(c: H2Client) -> None:  # 413, then the server's RST_STREAM
    sid = c.request("/", body=b"a", end=False, headers=[("content-length", "100")])
    assert c.wait(sid)[0].status == 413


COUNTED = [_cancel_running, _cancel_while_sending, _malformed, _body_short_of_content_length]
NOT_COUNTED = [_cancel_answered, _cancel_after_the_response_while_sending, _refused_while_sending]


def _run(step: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[int | None, int]:
    """Repeat ``step`` on one connection: (the round that drew a GOAWAY, its code)."""
    # The engine's own graceful end out of reach: zttp answers alone.
    monkeypatch.setattr(engine_zttp, "graceful_resets", lambda streams: 10**9)
    options: dict[str, Any] = {"http2_engine": "zttp", "limit_request_body": 50}
    with ServerThread(app, **options) as server, H2Client(server.port) as client:
        for round_ in range(1, ROUNDS + 1):
            step(client)
            _sync(client)
            if client.goaway is not None:
                return round_, client.goaway.error_code
        assert client.get("/").status == 200
    return None, 0


@pytest.mark.parametrize("step", COUNTED, ids=lambda step: step.__name__.strip("_"))
def test_zttp_ends_the_connection_at_the_257th_reset_it_counts(
    step: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(step, monkeypatch) == (RESETS_PER_CONNECTION + 1, ENHANCE_YOUR_CALM)


@pytest.mark.parametrize("step", NOT_COUNTED, ids=lambda step: step.__name__.strip("_"))
def test_resets_zttp_does_not_count(step: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(step, monkeypatch) == (None, 0)


def test_the_count_is_for_the_connections_life(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a rate: a pause of 3 seconds halfway (a bucket refilled at the flood guard's 33 a
    second would have forgotten 100 resets by then) changes nothing."""
    done = []

    def slowly(c: H2Client) -> None:
        _cancel_running(c)
        done.append(1)
        if len(done) == RESETS_PER_CONNECTION // 2:
            time.sleep(3)

    assert _run(slowly, monkeypatch) == (RESETS_PER_CONNECTION + 1, ENHANCE_YOUR_CALM)


def test_the_engine_counts_what_zttp_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's count (engine_zttp.ZttpEngine._resets) equals zttp's, step by step."""
    counts: list[int] = []
    engines: list[engine_zttp.ZttpEngine] = []
    made = engine_zttp.ZttpEngine.__init__

    def keep(self: engine_zttp.ZttpEngine, settings: Any) -> None:
        made(self, settings)
        engines.append(self)

    monkeypatch.setattr(engine_zttp.ZttpEngine, "__init__", keep)
    with (
        ServerThread(app, http2_engine="zttp", limit_request_body=50) as server,
        H2Client(server.port) as client,
    ):
        for step in [*COUNTED, *NOT_COUNTED]:
            step(client)
            _sync(client)
            counts.append(engines[0]._resets)
    assert counts == [1, 2, 3, 4, 4, 4, 4]
