"""The WSGI outbox off the app thread: memory, then a temporary file, then the thread waits."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from dualcorn.adapters import wsgi_threads
from dualcorn.adapters.wsgi import WSGIAdapter
from dualcorn.adapters.wsgi_threads import Outbox
from tests.asgi_driver import drive
from tests.wsgi_helpers import ClosingBody, app_returning

KIB = 1024


class SignallingBody(ClosingBody):
    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__(chunks)
        self.closed_event = threading.Event()

    def close(self) -> None:
        super().close()
        self.closed_event.set()


@pytest.fixture
def spills(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    made: list[object] = []
    original = wsgi_threads._SpillFile

    def counting() -> object:
        made.append(original())
        return made[-1]

    monkeypatch.setattr(wsgi_threads, "_SpillFile", counting)
    return made


async def test_the_thread_is_free_before_a_slow_client_has_read(spills: list[object]) -> None:
    size = 16 * KIB
    body = SignallingBody([bytes([i]) * size for i in range(64)])  # 1 MiB
    adapter = WSGIAdapter(
        app_returning(body), threads=1, outbuf_overflow=64 * KIB, outbuf_high_watermark=4096 * KIB
    )
    finished_first: list[bool] = []

    async def slow_send(message: dict[str, Any]) -> None:
        if message.get("body") and not finished_first:
            # The client reads nothing until the app has returned and close() was called.
            finished_first.append(await asyncio.to_thread(body.closed_event.wait, 10))

    try:
        exchange = await drive(adapter, on_send=slow_send)
    finally:
        await adapter.shutdown(10)
    assert finished_first == [True]
    assert exchange.body == b"".join(body.chunks)  # type: ignore[arg-type]
    assert body.closed == 1
    assert spills  # past 64 KiB behind, the rest waited in a temporary file


async def test_past_the_high_watermark_the_thread_waits(spills: list[object]) -> None:
    size = 16 * KIB
    body = ClosingBody([bytes([i % 256]) * size for i in range(400)])  # 6.4 MiB
    ahead: list[int] = []
    adapter = WSGIAdapter(
        app_returning(body), threads=1, outbuf_overflow=32 * KIB, outbuf_high_watermark=256 * KIB
    )

    async def slow_send(message: dict[str, Any]) -> None:
        if message.get("body"):
            await asyncio.sleep(0)
            ahead.append(body.produced * size - sum(len(b) for b in sent))
            sent.append(message["body"])

    sent: list[bytes] = []
    try:
        exchange = await drive(adapter, on_send=slow_send)
    finally:
        await adapter.shutdown(10)
    assert exchange.body == b"".join(body.chunks)  # type: ignore[arg-type]
    assert max(ahead) <= 256 * KIB + 2 * size  # the bound, plus the chunk that crossed it
    # A file takes at most the high watermark before the next one starts (the old one goes
    # once read back): not a file per chunk.
    assert spills and len(spills) <= 400 * size // (256 * KIB) + 1
    assert body.closed == 1


async def test_a_request_abandoned_before_a_thread_took_it_is_skipped() -> None:
    outbox = Outbox(asyncio.get_running_loop())
    outbox.abandon()
    assert not outbox.claim()
    late = Outbox(asyncio.get_running_loop())
    assert late.claim()
    late.abandon()  # too late: the app runs already, and its posts find the client gone
    assert not late.aborted
