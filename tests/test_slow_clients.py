"""Slow clients: the request head and body timeouts with a minimum rate (Apache mod_reqtimeout).

A client trickling bytes below ``timeout_min_rate`` is closed (408 once part of a head
arrived), none takes longer than ``timeout_request_head_max`` over a head, a slow client above
the rate is served, and another connection is answered all the while.  Every test runs on both
loops and both parsers (the ``serve`` fixture), with short timeouts; the assertions are about
what happened, never how long it took.

The body cases also run over HTTP/2 (``@over_both``, h2c with tests/h2client.py trickling DATA
frames): the minimum rate is the request cycle's, so an HTTP/2 stream below it is reset with
CANCEL (RFC 9113 8.1) while the connection serves on.  The head cases stay HTTP/1.1: an HTTP/2
head is a HEADERS frame, bounded by the connection's timers and the CONTINUATION limits
(tests/test_http_transport.py, tests/test_http2_attacks.py), with no per-byte head rate to apply.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import over_both
from tests.h2client import H2Client, StreamResult
from tests.rawhttp import RawClient
from tests.support import read_until_closed, status_of

Scope = dict[str, Any]
Serve = Callable[..., Any]
CANCEL = 0x8  # RFC 9113 7


async def echo_length(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the number of body bytes read (or nothing if the client went)."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def trickle(port: int, head: bytes, pieces: list[bytes], interval: float) -> tuple[int, bytes]:
    """Send ``head`` then each piece ``interval`` seconds apart, until the server answers or
    closes; return how many pieces were sent and everything the server wrote."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head)
        sent = 0
        for piece in pieces:
            readable, _, _ = select.select([sock], [], [], interval)
            if readable:
                break  # an answer, or the close
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += 1
        return sent, read_until_closed(sock, timeout=10)


def h2_trickle(
    port: int, length: int, pieces: list[bytes], interval: float
) -> tuple[int, StreamResult]:
    """:func:`trickle` over HTTP/2: a stream with ``content-length: length``, then each piece
    as a DATA frame ``interval`` seconds apart, until the server answers or resets it."""
    with H2Client(port, timeout=10) as client:
        sid = client.request("/", "POST", headers=[("content-length", str(length))], end=False)
        result = client.streams[sid]
        sent = 0
        for index, piece in enumerate(pieces):
            readable, _, _ = select.select([client.sock], [], [], interval)
            if readable and (not client.receive_once() or result.done):
                break  # an answer, a reset, or the close
            client.send_body(sid, piece, end=index == len(pieces) - 1)
            sent += 1
        if not result.done:
            client.wait(sid)
        return sent, result


def other_connection_answered(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200


# --- Request head -----------------------------------------------------------------------------


def test_a_head_trickling_below_the_rate_gets_408(serve: Serve) -> None:
    options = {
        "timeout_request_head": 0.5,
        "timeout_request_head_max": 30,
        "timeout_min_rate": 1000,
    }
    with serve(echo_length, **options) as server:
        # 10 bytes a second against a 1000 B/s minimum: 600 pieces would take a minute.
        pieces = [b"x-slow: 1\r\n"[i : i + 1] for i in range(11)] * 60
        result: list[tuple[int, bytes]] = []
        thread = threading.Thread(
            target=lambda: result.append(trickle(server.port, b"GET / HTTP/1.1\r\n", pieces, 0.1))
        )
        thread.start()
        assert other_connection_answered(server.port)  # while the trickle goes on
        thread.join(30)
        sent, answer = result[0]
    assert status_of(answer) == 408
    assert sent < len(pieces)


def test_a_slow_head_above_the_rate_is_served(serve: Serve) -> None:
    # 40 bytes every 0.1 s (400 B/s) against a 100 B/s minimum: the whole head takes about
    # four times --timeout-request-head, and is served all the same.
    options = {"timeout_request_head": 1.0, "timeout_request_head_max": 60, "timeout_min_rate": 100}
    head = b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(
        b"x-pad-%02d: %s\r\n" % (i, b"p" * 26) for i in range(40)
    )
    pieces = [head[i : i + 40] for i in range(0, len(head), 40)] + [b"\r\n"]
    with serve(echo_length, **options) as server:
        sent, answer = trickle(server.port, b"", pieces, 0.1)
    assert sent == len(pieces)
    assert status_of(answer) == 200
    assert answer.endswith(b"\r\n\r\n0")


def test_no_head_lasts_past_the_max_whatever_its_rate(serve: Serve) -> None:
    # 400 B/s is above the minimum, but the head never ends: the max closes it with a 408.
    options = {
        "timeout_request_head": 0.5,
        "timeout_request_head_max": 1.5,
        "timeout_min_rate": 100,
    }
    pieces = [b"x-more: %s\r\n" % (b"m" * 30)] * 300  # 30 s of sending, 12 KB: under 64 KiB
    with serve(echo_length, **options) as server:
        sent, answer = trickle(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n", pieces, 0.1)
        assert other_connection_answered(server.port)
    assert status_of(answer) == 408
    assert sent < len(pieces)


def test_without_a_min_rate_the_head_timeout_is_fixed(serve: Serve) -> None:
    options = {"timeout_request_head": 0.5, "timeout_min_rate": 0}
    pieces = [b"x-fast: %s\r\n" % (b"f" * 200)] * 100  # 2 KB/s, but no rate extends it
    with serve(echo_length, **options) as server:
        sent, answer = trickle(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n", pieces, 0.1)
    assert status_of(answer) == 408
    assert sent < len(pieces)


def test_a_silent_connection_is_closed_without_an_answer(serve: Serve) -> None:
    with serve(echo_length, timeout_request_head=0.3) as server, RawClient(server.port) as client:
        assert client.is_closed_by_server(timeout=10)
        assert client.buf == b""


# --- Request body -----------------------------------------------------------------------------


def body_head(length: int) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % length


@over_both
def test_a_body_trickling_below_the_rate_is_cut_off(serve: Serve, protocol: str) -> None:
    # Each byte arrives well within the body timeout (the nginx rule alone would wait forever),
    # but 10 B/s is far below the 1000 B/s minimum.
    options = {"timeout_body_read": 0.5, "timeout_min_rate": 1000}
    pieces = [b"b"] * 600
    with serve(echo_length, **options) as server:
        result: list[tuple[int, Any]] = []

        def run() -> None:
            if protocol == "2":
                result.append(h2_trickle(server.port, 600, pieces, 0.1))
            else:
                result.append(trickle(server.port, body_head(600), pieces, 0.1))

        thread = threading.Thread(target=run)
        thread.start()
        assert other_connection_answered(server.port)
        thread.join(30)
        sent, answer = result[0]
    assert sent < len(pieces)
    if protocol == "2":
        assert answer.reset == CANCEL and not answer.headers  # no response: the stream is cut
    else:
        assert status_of(answer) != 200


@over_both
def test_a_slow_body_above_the_rate_is_read_whole(serve: Serve, protocol: str) -> None:
    # 400 B/s for about three times --timeout-body-read, against a 100 B/s minimum.
    options = {"timeout_body_read": 1.0, "timeout_min_rate": 100}
    pieces = [b"d" * 40] * 30
    with serve(echo_length, **options) as server:
        if protocol == "2":
            sent, result = h2_trickle(server.port, 1200, pieces, 0.1)
            assert sent == len(pieces)
            assert (result.status, bytes(result.data)) == (200, b"1200")
            return
        sent, answer = trickle(server.port, body_head(1200), pieces, 0.1)
    assert sent == len(pieces)
    assert status_of(answer) == 200
    assert answer.endswith(b"\r\n\r\n1200")


def test_a_body_that_stops_is_closed_after_the_timeout(serve: Serve) -> None:
    # A fast start banks no more than the timeout: stopping afterwards still ends it.
    options = {"timeout_body_read": 0.5, "timeout_min_rate": 100}
    with serve(echo_length, **options) as server, RawClient(server.port) as client:
        client.send(body_head(100_000) + b"z" * 50_000)
        assert client.is_closed_by_server(timeout=20)
