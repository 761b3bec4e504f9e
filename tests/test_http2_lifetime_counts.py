"""zttp's lifetime counts never cut a client: the graceful end comes first (both engines).

zttp 0.0.35 ends a connection with GOAWAY ENHANCE_YOUR_CALM at its 257th counted reset or
4,097th stream, however slowly they came (tests/test_zttp_counts.py measures what it counts).
The zttp engine ends the connection gracefully before either (RFC 9113 6.8, as at the stream
cap: dualcorn.protocols.http2.zttp_counts); a client that reopens its connection after each
GOAWAY, as gRPC and browsers do, loses nothing.  On ``h2`` nothing is counted over a
connection's life: the same clients keep one connection.  The flood guard's Rapid Reset
bucket (1,000 at once, 33 a second) is never approached per connection here; its own tests
(tests/test_http2_attacks.py) still stop a Rapid Reset on both engines.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("h2")

from dualcorn.protocols.http2.events import CANCEL, NO_ERROR, REFUSED_STREAM
from dualcorn.protocols.http2.zttp_counts import GRACEFUL_STREAMS, graceful_resets
from tests.h2client import H2Client
from tests.support import ServerThread
from tests.test_zttp_counts import app

CANCELS = 1000


def test_a_client_that_cancels_1000_streams_is_never_cut(h2_engine: str) -> None:
    """Each round: a stream whose app is running and another; the first is cancelled, the
    second answered.  After a GOAWAY the client finishes the round and reconnects."""
    cancelled = answered = connections = 0
    with ServerThread(app) as server:
        while cancelled < CANCELS:
            connections += 1
            with H2Client(server.port, timeout=30) as client:
                while cancelled < CANCELS and client.goaway is None:
                    running = client.request("/hold")
                    other = client.request("/")
                    while not client.streams[running].data:
                        assert client.receive_once(), f"connection closed: {client.goaways}"
                        assert not client.streams[running].done, "the running stream ended"
                    assert client.wait(other)[0].status == 200
                    answered += 1
                    client.conn.reset_stream(running, CANCEL)
                    client.flush()
                    cancelled += 1
                if client.goaway is not None:
                    client.wait_closed()
                assert [g.error_code for g in client.goaways] == [NO_ERROR] * len(client.goaways)
    assert answered == CANCELS
    if h2_engine == "zttp":
        per_connection = graceful_resets(100)
        assert connections >= CANCELS // per_connection
    else:
        assert connections == 1


def test_every_stream_open_at_the_goaway_can_still_be_cancelled(h2_engine: str) -> None:
    """The worst case of the arithmetic (zttp_counts.graceful_resets): 100 running streams at
    all times, one cancelled and replaced at a time; after the GOAWAY the client cancels all
    100 still open.  zttp counts 124 + 100 resets then, under its 256."""
    with ServerThread(app) as server, H2Client(server.port, timeout=30) as client:

        def running() -> int | None:
            """A stream whose app runs; one refused (the slot of a stream just cancelled is
            free once its app has returned) is retried, as RFC 9113 8.7 allows, until the
            server's GOAWAY (then the client opens no more streams here: None)."""
            for _ in range(500):
                sid = client.request("/hold")
                result = client.streams[sid]
                while not result.done and not result.data:
                    assert client.receive_once(), f"connection closed: {client.goaways}"
                if result.reset != REFUSED_STREAM:
                    assert result.data, result.reset
                    return sid
                if client.goaway is not None:
                    return None
                time.sleep(0.01)
            raise AssertionError("no stream slot came free")

        streams = [running() for _ in range(100)]
        cancelled = 0
        while client.goaway is None and cancelled < 300:
            sid = streams.pop(0)
            assert sid is not None
            client.conn.reset_stream(sid, CANCEL)
            client.flush()
            cancelled += 1
            streams.append(running())
        for sid in streams:
            if sid is not None and not client.streams[sid].done:
                client.conn.reset_stream(sid, CANCEL)
        client.flush()
        if h2_engine == "zttp":
            client.wait_closed()
            assert graceful_resets(100) <= cancelled <= graceful_resets(100) + 2
        else:
            assert cancelled == 300
            result = client.get("/")
            for _ in range(100):  # until the cancelled apps have returned
                if result.reset != REFUSED_STREAM:
                    break
                time.sleep(0.01)
                result = client.get("/")
            assert result.status == 200
        assert [g.error_code for g in client.goaways] == [NO_ERROR] * len(client.goaways)


def test_malformed_requests_zttp_resets_do_not_cut_the_client(h2_engine: str) -> None:
    """zttp counts its own resets of malformed requests (400 here) among its 256."""
    bad = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
           (b":authority", b"x"), (b"Bad", b"1")]  # fmt: skip
    refused = connections = 0
    with ServerThread(app) as server:
        while refused < 300:
            connections += 1
            with H2Client(server.port, timeout=30) as client:
                while refused < 300 and client.goaway is None:
                    result, good = client.wait([client.raw_headers(bad), client.request("/")])
                    assert all(g.error_code == NO_ERROR for g in client.goaways), client.goaways
                    assert (result.status, good.status) == (400, 200)
                    refused += 1
                if client.goaway is not None:
                    client.wait_closed()
                assert [g.error_code for g in client.goaways] == [NO_ERROR] * len(client.goaways)
    # On zttp a connection ends after graceful_resets(100) = 124 of them.
    assert connections == (1 if h2_engine == "h2" else 3)


def test_streams_the_server_refuses_count_toward_zttps_4096(h2_engine: str) -> None:
    """zttp counts every stream it opened, also those dualcorn answers 414 itself: 900 of those
    and 3,300 served would pass zttp's 4,096 with 3,300 served streams only."""
    long_path = "/" + "a" * 200
    statuses: list[int] = []
    options: dict[str, Any] = {"limit_request_line": 100}
    with ServerThread(app, **options) as server, H2Client(server.port, timeout=30) as client:
        for batch in range(84):  # 50 streams each: 18 refused, then 32 served
            paths = [long_path] * 18 + ["/"] * 32 if batch < 50 else ["/"] * 50
            sids = [client.request(path) for path in paths]
            statuses += [r.status for r in client.wait(sids) if r.headers]
            if client.goaway is not None:
                break
        if h2_engine == "zttp":
            client.wait_closed()
            assert [g.error_code for g in client.goaways] == [NO_ERROR, NO_ERROR]
            assert len(statuses) >= GRACEFUL_STREAMS
        else:
            assert client.goaway is None
            assert len(statuses) == 84 * 50
    assert set(statuses) == {200, 414}
