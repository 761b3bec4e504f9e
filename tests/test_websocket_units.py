"""WebSocket pieces on their own: upgrade detection, the inbox, the app's own response."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.frames import BINARY, CONT, TEXT, Frame

from dualcorn import Config
from dualcorn.errors import AppContractError
from dualcorn.protocols.state import ServerState
from dualcorn.protocols.websocket.handshake import AppResponse, Handshake, is_websocket_upgrade
from dualcorn.protocols.websocket.inbox import Inbox, InvalidText, TooManyFragments

UPGRADE = [(b"host", b"x"), (b"connection", b"keep-alive, Upgrade"), (b"upgrade", b"WebSocket")]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (UPGRADE, True),
        ([(b"upgrade", b"websocket")], False),  # no Connection: Upgrade
        ([(b"connection", b"upgrade"), (b"upgrade", b"h2c")], False),
        ([], False),
    ],
)
def test_upgrade_detection(headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert is_websocket_upgrade(headers) is expected


def _inbox(max_queue: int = 32, **bounds: int) -> tuple[Inbox, list[str]]:
    calls: list[str] = []
    return Inbox(lambda: calls.append("room"), max_queue, **bounds), calls


async def test_fragments_become_one_message_and_utf8_may_split() -> None:
    inbox, _ = _inbox()
    for frame in (Frame(TEXT, b"caf\xc3", fin=False), Frame(CONT, b"\xa9 ", fin=False),
                  Frame(CONT, b"ok")):  # fmt: skip
        inbox.feed(frame)
    inbox.feed(Frame(BINARY, b"\x00", fin=False))
    inbox.feed(Frame(CONT, b"\x01"))
    assert await inbox.get() == {"type": "websocket.receive", "text": "café ok"}
    assert await inbox.get() == {"type": "websocket.receive", "bytes": b"\x00\x01"}


async def test_invalid_utf8_is_refused_at_the_fragment_that_carries_it() -> None:
    inbox, _ = _inbox()
    inbox.feed(Frame(TEXT, b"fine so far", fin=False))
    with pytest.raises(InvalidText):
        inbox.feed(Frame(CONT, b"\xff", fin=False))


async def test_too_many_fragments_are_refused_and_the_next_message_is_whole() -> None:
    inbox, _ = _inbox(max_fragments=3)
    inbox.feed(Frame(BINARY, b"a", fin=False))
    inbox.feed(Frame(CONT, b"b", fin=False))
    inbox.feed(Frame(CONT, b"c", fin=False))
    with pytest.raises(TooManyFragments):
        inbox.feed(Frame(CONT, b"d", fin=False))


async def test_reading_pauses_at_max_queue_and_resumes_when_drained() -> None:
    inbox, calls = _inbox(max_queue=4)
    for i in range(4):
        inbox.feed(Frame(TEXT, b"%d" % i))
    assert inbox.full
    for _ in range(3):
        await inbox.get()
    assert calls == ["room"] and not inbox.full  # one left: below a quarter of the queue
    inbox.close(1000, "")
    assert (await inbox.get())["text"] == "3"
    assert await inbox.get() == {"type": "websocket.disconnect", "code": 1000, "reason": ""}


async def test_the_queue_is_bounded_in_bytes_and_dropped_when_the_client_leaves() -> None:
    inbox, calls = _inbox(max_queue=1000, max_bytes=1000)
    inbox.feed(Frame(BINARY, b"x" * 600))
    assert not inbox.full
    inbox.feed(Frame(BINARY, b"x" * 600))
    assert inbox.full and inbox.queued_bytes == 1200
    assert len((await inbox.get())["bytes"]) == 600
    assert inbox.full and not calls  # 600 bytes are still more than a quarter
    inbox.close(1006, "")  # the app fell behind: what it did not read is dropped
    assert inbox.queued_bytes == 0
    assert (await inbox.get())["type"] == "websocket.disconnect"


async def test_get_waits_for_a_message() -> None:
    inbox, _ = _inbox()
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.feed(Frame(TEXT, b"hi"))
    assert (await waiting)["text"] == "hi"


def _state(**options: Any) -> ServerState:
    return ServerState(Config(app=object(), **options), object())


def test_accept_response_carries_subprotocol_extensions_and_app_headers() -> None:
    headers = [
        *UPGRADE,
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
    ]
    handshake = Handshake(b"GET", b"/ws", b"1.1", headers, Config(app=object()))
    assert handshake.rejection is None
    message = {"subprotocol": "chat", "headers": [(b"x-app", b"1")]}
    head = handshake.accept_response(message, _state())
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    # RFC 6455 1.3: the accept value for the RFC's own sample key.
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert b"sec-websocket-extensions: permessage-deflate" in head
    assert b"sec-websocket-protocol: chat\r\n" in head and b"x-app: 1\r\n" in head
    assert head.endswith(b"\r\n\r\n")


def test_invalid_handshake_is_rejected_without_the_app() -> None:
    headers = [*UPGRADE, (b"sec-websocket-version", b"8")]
    handshake = Handshake(b"GET", b"/ws", b"1.1", headers, Config(app=object()))
    assert handshake.rejection is not None and handshake.rejection.startswith(b"HTTP/1.1 400 ")


def test_app_response_framing() -> None:
    response = AppResponse({"status": 401, "headers": [(b"x-why", b"token")]}, _state())
    first = response.body({"body": b"no", "more_body": True})
    assert first.startswith(b"HTTP/1.1 401 ") and b"connection: close\r\n" in first
    assert b"content-length" not in first  # delimited by the close (RFC 9112 6.3 item 8)
    assert response.body({"body": b"pe"}) == b"pe" and response.complete
    single = AppResponse({"status": 403}, _state()).body({"body": b"denied"})
    assert b"content-length: 6\r\n" in single and single.endswith(b"\r\n\r\ndenied")
    with pytest.raises(AppContractError):
        AppResponse({"status": 101}, _state())
