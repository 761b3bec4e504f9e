"""The request side of a cycle: the body the protocol feeds in and the app's ``receive``.

The protocol *feeds* body bytes, the end of the body, a disconnect (and, for HTTP/1.1, the
client's half-close); the app *pulls* them with ``receive``.  What is buffered is bounded:
past ``--read-high-water`` bytes the owner is asked to stop reading (TCP reading, or HTTP/2
window updates), past ``--limit-request-body`` the request ends with 413, and a client that
sends too slowly is dropped (``--timeout-body-read``, ``--timeout-min-rate``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dualcorn.protocols.state import ServerState
    from dualcorn.protocols.writer import CycleOwner, ResponseWriter

__all__ = ["RequestBody"]

_DISCONNECT = {"type": "http.disconnect"}


class RequestBody:
    """The body half of :class:`~dualcorn.protocols.cycle.RequestCycle`, which sets these
    fields in its ``__init__`` (one constructor call per request on the hot path)."""

    __slots__ = (
        "_body",
        "_body_allowance",
        "_body_done",
        "_body_limit",
        "_body_seen",
        "_client_done",
        "_expect_100",
        "_more_body",
        "_on_disconnect",
        "_wake",
        "disconnected",
    )  # fmt: skip

    _body: bytearray
    _body_allowance: float
    _body_done: bool  # the final http.request message was delivered
    _body_limit: int | None
    _body_seen: int
    _client_done: bool  # the client half-closed after the whole request
    _expect_100: bool
    _more_body: bool
    _on_disconnect: Callable[[], object] | None  # unset until dualcorn_on_disconnect
    _wake: asyncio.Event | None
    disconnected: bool
    # The cycle's:
    owner: CycleOwner
    writer: ResponseWriter
    state: ServerState
    started: bool
    complete: bool

    def _gone(self) -> bool:
        raise NotImplementedError

    def dualcorn_body_absent(self) -> bool:
        """Whether the request has no body at all, so that ``receive()`` would only say so:
        an HTTP/2 request whose HEADERS ended the stream (RFC 9113 8.1), which a Content-Length
        or its absence does not tell.  The WSGI adapter (found on ``receive.__self__``) then
        gives the app an empty ``wsgi.input`` without awaiting ``receive()``, as it does for an
        HTTP/1.1 request without a body (RFC 9112 6.3)."""
        return not (self._more_body or self._body_seen or self._expect_100 or self.disconnected)

    def dualcorn_on_disconnect(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` on the loop once the client is gone (a reset stream, a lost
        connection), or now if it is.  What ``receive()`` would say in time, without a task
        waiting in it: the WSGI adapter lets an HTTP/2 request that waits for an app thread
        be skipped at once when its client resets it (see ``adapters/wsgi_watch.py``)."""
        if self.disconnected:
            callback()
        else:
            self._on_disconnect = callback

    # --- Fed by the protocol ------------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        self._body += data
        self._body_seen += len(data)
        if self._body_limit is not None and self._body_seen > self._body_limit:
            # Checked as bytes arrive, so a chunked body is capped like a declared one.
            self.owner.body_too_large()  # answers 413 if it can, and closes
            return
        if len(self._body) > self.state.config.read_high_water:
            self.owner.pause_body()
        self._notify()

    def feed_end(self) -> None:
        self._more_body = False
        self._notify()

    def feed_disconnect(self) -> None:
        self.disconnected = True
        # Set only by dualcorn_on_disconnect; unset (most cycles), the slot reads as None here.
        callback = getattr(self, "_on_disconnect", None)
        if callback is not None:
            self._on_disconnect = None
            callback()
        self._notify()

    def feed_eof(self) -> None:
        """The client sent its FIN after the whole request: the response is still due."""
        self._client_done = True
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    @property
    def body_over_limit(self) -> bool:
        return self._body_limit is not None and self._body_seen > self._body_limit

    # --- ASGI receive --------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if self._expect_100:
            # RFC 9110 10.1.1: the 100 goes out only once the app asks for the body, so an app
            # that answers at once (401, 413) spares the client from sending it.
            self._expect_100 = False
            if not self.started and not self.disconnected and not self._gone():
                self.writer.interim(100, [])
        while True:
            if self.disconnected or self.body_over_limit:
                return _DISCONNECT
            if self._body or (self._body_done is False and not self._more_body):
                data = bytes(self._body)
                self._body.clear()
                self.owner.resume_body()
                if not self._more_body:
                    self._body_done = True
                return {"type": "http.request", "body": data, "more_body": self._more_body}
            if self.complete:
                return _DISCONNECT
            if self._client_done:
                # An app that waits past its body waits for the client to go, and a FIN is
                # all a client that closed shows until a write fails: as before half-closes
                # were served, it is a disconnect.  An app that just answers is not asked.
                self.feed_disconnect()
                self.owner.client_gone()
                return _DISCONNECT
            if self._wake is None:
                self._wake = asyncio.Event()
            self._wake.clear()
            if self._more_body:
                if not await self._wait_for_body(self._wake):
                    self.state.error_logger.debug("request body too slow; closing the connection")
                    self.disconnected = True
                    self.owner.body_stalled()
                    return _DISCONNECT
            else:
                # The body is all read: wait for the client to go or the response to end.
                await self._wake.wait()

    async def _wait_for_body(self, wake: asyncio.Event) -> bool:
        """Wait for more of the body; False once the client has run out of time.

        Apache mod_reqtimeout ``body=20,MinRate=500``: the client has ``timeout_body_read``
        seconds, and every ``timeout_min_rate`` bytes it sends buy one more, banking at most
        ``timeout_body_read`` ahead.  So a client that stops is closed after that long (nginx
        client_body_timeout), one trickling below the rate soon after, and one sending at the
        rate never.  Only time the app spends waiting here counts, not its own pauses.
        """
        config = self.state.config
        loop = asyncio.get_running_loop()
        seen = self._body_seen
        started = loop.time()
        try:
            async with asyncio.timeout(self._body_allowance):
                await wake.wait()
        except TimeoutError:
            return False
        rate = config.timeout_min_rate
        if rate:  # with no rate, only the gap between two reads is limited (nginx)
            allowance = self._body_allowance - (loop.time() - started)
            allowance += (self._body_seen - seen) / rate
            self._body_allowance = min(allowance, config.timeout_body_read)
        return True
