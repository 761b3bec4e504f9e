"""Watching the clients of WSGI requests that wait for a thread, without a task per request.

Theory of operation
-------------------
A request whose app thread is not free yet holds no thread, but its client may hang up while it
waits; the thread that takes it later should then skip the application (see
:mod:`.wsgi`).  Learning that the client left takes a ``receive()`` that may wait for ever,
so it needs a task of its own, and a task per request costs more than the rest of the adapter's
loop-side work for a small response (creating, registering, cancelling it).  Under load nearly
every request waits a moment, and nearly all of them get a thread within milliseconds.

So a waiting request is only *noted* (a list append); a timer ticks every ``delay`` seconds
while notes exist, and a request still waiting, unclaimed, one to two ticks after it was noted
gets its watching task then.  A client that hangs up sooner costs at most one run of the
application (as if it had left a moment after a thread took its request); one that waits
behind a busy pool is seen and skipped, as before.
"""

from __future__ import annotations

import asyncio

from dualcorn.adapters.wsgi_input import Message, Receive
from dualcorn.adapters.wsgi_threads import Outbox

__all__ = ["WATCH_AFTER", "WaitWatcher", "Watch"]

# Seconds a request waits for a thread before its client is watched: well above the time a
# queue of small requests takes to drain, well below the time a client waits before giving up.
WATCH_AFTER = 0.05


class Watch:
    """One waiting request; :meth:`stop` when it is over (on the loop thread)."""

    __slots__ = ("outbox", "receive", "task")

    def __init__(self, outbox: Outbox, receive: Receive) -> None:
        self.outbox: Outbox | None = outbox
        self.receive: Receive | None = receive
        self.task: asyncio.Future[bool] | None = None

    def stop(self) -> None:
        self.outbox = self.receive = None  # the request is over: let go of it now
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def start_if_waiting(self) -> None:
        outbox, receive = self.outbox, self.receive
        if outbox is None or receive is None or outbox.claimed or outbox.aborted:
            return  # over, or a thread took it: its own posts will find a client gone
        task: asyncio.Future[bool] = asyncio.ensure_future(_client_gone(receive))
        task.add_done_callback(lambda done: _abandon_if_gone(outbox, done))
        self.task = task


class WaitWatcher:
    """Notes waiting requests and watches those still waiting ``delay`` to ``2 * delay`` later."""

    __slots__ = ("_delay", "_loop", "_old", "_timer", "_young")

    def __init__(self, delay: float = WATCH_AFTER) -> None:
        self._delay = delay
        self._young: list[Watch] = []  # noted since the last tick
        self._old: list[Watch] = []  # noted before it: due at the next tick
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, outbox: Outbox, receive: Receive, loop: asyncio.AbstractEventLoop) -> Watch:
        """Note a request that may wait for a thread (on ``loop``, the running loop: the
        caller has it already, and on CPython 3.11 each ``get_running_loop()`` costs a
        ``getpid()``)."""
        watch = Watch(outbox, receive)
        self._young.append(watch)
        if self._timer is None or self._loop is not loop:  # (an adapter reused on a new loop)
            self._loop = loop
            self._timer = loop.call_later(self._delay, self._tick)
        return watch

    def _tick(self) -> None:
        due, self._old, self._young = self._old, self._young, []
        for watch in due:
            watch.start_if_waiting()
        self._timer = None
        if self._old and self._loop is not None:
            self._timer = self._loop.call_later(self._delay, self._tick)


async def _client_gone(receive: Receive) -> bool:
    """Whether the client hung up (waits until it does, or its request's end)."""
    message: Message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        # An HTTP/1.x request without a body is not received before the app runs: this was
        # its (empty) body; the next receive() is the one that waits for a disconnect.
        message = await receive()
    return bool(message["type"] == "http.disconnect")


def _abandon_if_gone(outbox: Outbox, watch: asyncio.Future[bool]) -> None:
    """The client of a request waiting for a thread hung up: the thread will skip it."""
    if not watch.cancelled() and watch.exception() is None and watch.result():
        outbox.abandon()
