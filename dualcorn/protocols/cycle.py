"""One HTTP request/response exchange, driven through the ASGI 3 ``http`` interface.

Theory of operation: a protocol (the HTTP/1.1 message loop, an HTTP/2 stream) builds the scope
and creates a :class:`RequestCycle` with its :class:`~dualcorn.protocols.writer.CycleOwner` and
:class:`~dualcorn.protocols.writer.ResponseWriter`; it then *feeds* the cycle body bytes, the
end of the body, or a disconnect.  The app *pulls* the body with ``receive`` and *pushes* the
response with ``send``.  The cycle knows ASGI and nothing of the wire: it enforces the message
order, checks the app's headers (once per distinct header, cached per server), keeps the
content-length books, bounds the body in bytes and time, writes the access line, and tells the
writer what to put on the wire (see :mod:`dualcorn.protocols.writer` for the contract).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from dualcorn.access_format import request_extra
from dualcorn.errors import AppContractError
from dualcorn.protocols.logline import access_line
from dualcorn.protocols.request_body import RequestBody
from dualcorn.protocols.state import ServerState
from dualcorn.protocols.writer import (
    CONNECTION,
    CONTENT_LENGTH,
    DATE,
    DEFAULT,
    HEADER_CACHE_SIZE,
    PLAIN,
    ClientDisconnected,
    CycleOwner,
    ResponseWriter,
    classify_field,
    validate_header,
)

__all__ = ["ClientDisconnected", "RequestCycle", "run_cycle"]

# RFC 9110 6.4.1: 204 and 304 responses never carry content.
_NO_CONTENT = frozenset({204, 304})


def _two_lengths() -> AppContractError:
    # RFC 9112 6.3 (5): two lengths make the response unreadable to every recipient.
    return AppContractError("the app sent more than one Content-Length header")


class RequestCycle(RequestBody):
    """One request: its body comes in through :class:`RequestBody`, its response goes out here."""

    __slots__ = (
        "_close",
        "_fields",
        "_head_sent",
        "_length",
        "_no_body",
        "_replaced",
        "_trailers",
        "bytes_sent",
        "complete",
        "head_request",
        "owner",
        "response_headers",
        "scope",
        "start_time",
        "started",
        "state",
        "status",
        "task",
        "writer",
    )  # fmt: skip
    # ASGI "http.response.trailers": True until the body ends, then the trailer fields.
    _trailers: list[Any] | bool | None

    def __init__(
        self,
        scope: dict[str, Any],
        owner: CycleOwner,
        writer: ResponseWriter,
        state: ServerState,
        *,
        expect_100: bool,
        more_body: bool,
    ) -> None:
        self.scope = scope
        self.task: asyncio.Task[None] | None = None  # set by the protocol that starts it
        self.owner = owner
        self.writer = writer
        self.state = state
        self.head_request = scope["method"] == "HEAD"
        self.start_time = time.monotonic()
        self.started = self.complete = self.disconnected = False
        self.status = 0
        self._expect_100 = expect_100
        self._more_body = more_body
        self._body = bytearray()
        self._body_done = False  # the final http.request message was delivered
        self._client_done = False  # the client half-closed after the whole request
        self._body_seen = 0
        config = state.config
        self._body_limit = config.limit_request_body
        self._body_allowance = config.timeout_body_read
        self._wake: asyncio.Event | None = None
        # The checked head (_fields, _length: the declared Content-Length or the whole body's,
        # _close, _replaced, _no_body: HEAD, 204, 304) is set by _prepare_head, which every
        # path runs before reading it, and handed to the writer with the first body (_start).
        self._head_sent = False
        self.bytes_sent = 0  # body bytes passed to the writer (the access log's %b)
        self.response_headers: Any = ()  # the app's, for the access log's %({name}o)s

    # --- ASGI send -----------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        if not self.started:
            if kind == "http.response.early_hint":
                self._early_hint(message)
                return
            if kind != "http.response.start":
                raise AppContractError(
                    f"expected 'http.response.start' first, but the app sent {kind!r}"
                )
            self._prepare_head(message)
            return
        if self.complete:
            raise AppContractError(f"the app sent {kind!r} after the response was complete")
        if self.writer.gone():
            self.feed_disconnect()  # as connection_lost will (see _gone)
            raise ClientDisconnected("the client disconnected")
        if kind == "http.response.body":
            body = message.get("body", b"")
            if message.get("more_body", False):
                if self._write(body, False):
                    await self._drain()
            elif self._trailers is True:
                # The body ends with the trailers (ASGI "http.response.trailers").
                self._trailers = []
                if self._write(body, False):
                    await self._drain()
            elif self._trailers is None:
                self._write(body, True)
                self._finish()
            else:
                raise AppContractError("the app sent a body after it had ended")
        elif kind == "http.response.trailers" and isinstance(self._trailers, list):
            self._add_trailers(message)
        elif kind == "http.response.zerocopysend":
            more = message.get("more_body", False)
            await self._sendfile(message["file"], message.get("offset"), message.get("count"), more)
            if not more:
                self._write(b"", True)
                self._finish()
        elif kind == "http.response.pathsend":
            # ASGI "http.response.pathsend" extension: the whole file, then the end.
            loop = asyncio.get_running_loop()
            file = await loop.run_in_executor(None, open, message["path"], "rb")
            try:
                await self._sendfile(file, None, None, False)
            finally:
                file.close()
            self._write(b"", True)
            self._finish()
        else:
            raise AppContractError(f"expected 'http.response.body', but the app sent {kind!r}")

    def _early_hint(self, message: dict[str, Any]) -> None:
        """ASGI "http.response.early_hint": an RFC 8297 103 carrying the app's Link fields."""
        fields = []
        for link in message.get("links", ()):
            validate_header(b"link", link)
            fields.append(self.writer.encode_field(b"link", link))
        if fields and not self._gone():
            self.writer.interim(103, fields)

    def _add_trailers(self, message: dict[str, Any]) -> None:
        """ASGI "http.response.trailers": fields after the body; the writer sends them."""
        fields = self._trailers
        assert isinstance(fields, list)
        for name, value in message.get("headers", ()):
            validate_header(name, value)
            fields.append(self.writer.encode_field(name, value))
        if not message.get("more_trailers", False):
            self.writer.trailers(fields)
            self._finish()

    def _prepare_head(self, message: dict[str, Any]) -> None:
        status = message["status"]
        # ASGI HTTP spec: http.response.start carries the final response.  RFC 9110 15.2: a 1xx
        # is interim (a 101 would switch a proxy to a tunnel, and a client would read the next
        # response as this one's), and 15: a status is three digits from 100 to 599.
        if type(status) is not int or not 200 <= status <= 599:
            raise AppContractError(f"invalid final response status {status!r} (200 to 599)")
        state = self.state
        writer = self.writer
        fields: list[Any] = []
        replaced: set[bytes] | None = None  # default fields the app set itself
        close = False
        length: int | None = None
        known = writer.field_cache
        headers = message.get("headers", ())
        for name, value in headers:
            if name == b"content-length" and type(value) is bytes and value.isdigit():
                # The one header that differs on nearly every response: skip the cache.
                if length is not None:
                    raise _two_lengths()
                length = int(value)
                continue
            try:
                entry = known.get((name, value))
            except TypeError:  # unhashable (a bytearray): classify_field() says what is wrong
                entry = None
            if entry is None:
                entry = classify_field(name, value, state.default_names, writer.encode_field)
                if entry[0] != CONTENT_LENGTH and len(known) < HEADER_CACHE_SIZE:
                    known[(name, value)] = entry
            kind, field = entry
            if kind == PLAIN:
                fields.append(field)
            elif kind == CONTENT_LENGTH:
                if length is not None:
                    raise _two_lengths()
                length = int(value)
            elif kind == CONNECTION:
                if b"close" in value.lower():
                    close = True
            elif kind in (DATE, DEFAULT):
                if replaced is None:
                    replaced = set()
                replaced.add(name.lower())
                fields.append(field)
            # TRANSFER_ENCODING: framing belongs to the server (the writer), so the app's own
            # header is dropped.
        if state.request_ids is not None:  # --request-id-header echoes the request's id
            echo = state.request_ids.echo_field(self.scope, headers)
            if echo is not None:
                fields.append(writer.encode_field(*echo))
        self.response_headers = headers
        self.status = status
        self.started = True
        self._fields = fields
        if status == 204 and length is not None:
            # RFC 9110 8.6: a server MUST NOT send Content-Length in a 204.  "0" (Django's
            # CommonMiddleware adds it) is dropped; any other length means a body was meant.
            if length:
                raise AppContractError(f"a 204 response with Content-Length {length}")
            length = None
        self._length = length
        self._close = close
        self._replaced = replaced
        self._no_body = self.head_request or status in _NO_CONTENT
        self._trailers = message.get("trailers") is True or None

    def _start(self, body: bytes, end: bool) -> None:
        """Hand the writer the head, with the length the first body message shows."""
        self._head_sent = True
        length = self._length
        # The first body message is the last: its size is the length, except for a HEAD
        # response with no body (the length is unknown) and 204/304 (no body at all).
        if (
            length is None
            and end
            and (body or not self.head_request)
            and self.status not in _NO_CONTENT
        ):
            length = self._length = len(body)
        self.writer.start(self.status, self._fields, length, self._close, self._replaced)

    def _write(self, body: bytes, end: bool) -> bool:
        """Pass body bytes on (``end``: the last); True if the writer asks to drain."""
        if not self._no_body:
            sent = self.bytes_sent + len(body)
            declared = self._length
            if declared is not None:
                # Checked before the head is written: if the first body message is already
                # too long, nothing has gone out and the failure can still be a clean 500.
                if sent > declared:
                    raise AppContractError(
                        f"the app sent more body than its Content-Length of {declared}"
                    )
                if end and sent != declared:
                    self.bytes_sent = sent
                    self._short(body)
                    return False
            self.bytes_sent = sent
        if not self._head_sent:
            self._start(body, end)
        return self.writer.body(body, end)

    def _short(self, body: bytes) -> None:
        """The response ends short of its Content-Length: the client must not take it whole."""
        self.state.error_logger.error(
            "the app declared Content-Length %d but sent %d bytes; closing the connection",
            self._length,
            self.bytes_sent,
        )
        if not self._head_sent:
            self._start(body, False)
        self.writer.body(body, False)
        self.writer.abandon()

    async def _sendfile(self, file: Any, offset: int | None, count: int | None, more: bool) -> None:
        """ASGI "http.response.zerocopysend" extension: the writer sends the file's bytes."""
        if offset is None:
            offset = file.tell()
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        if not self._head_sent:
            if not more and self._length is None:
                self._length = count  # the file is the whole body: its size is the length
            self._start(b"", False)
        if self._no_body:
            return
        self.bytes_sent += count
        try:
            await self.writer.sendfile(file, offset, count)
        except ClientDisconnected:
            self.feed_disconnect()
            raise

    async def _drain(self) -> None:
        """Wait for the client to read; nginx ``send_timeout``: a client that reads nothing
        for ``--timeout-send`` seconds is dropped, and ``send`` raises."""
        if not await self.writer.drain():
            self.state.error_logger.debug("the client read nothing in --timeout-send; closing")
            self.writer.abort()
            self.feed_disconnect()
        if self.disconnected or self._gone():
            raise ClientDisconnected("the client disconnected")

    def _gone(self) -> bool:
        """The writer cannot write any more (a failed write, an abort): the client is gone.

        asyncio's transport closes itself when a write fails, but tells the protocol only on the
        loop's next turn (``connection_lost`` via ``call_soon``); until then it drops writes
        ("socket.send() raised exception.").  A send that would write into that gap must fail
        as a disconnect instead (ASGI HTTP spec: ``send`` raises ``OSError`` once the client has
        gone), or a producer that never has to wait (a WSGI thread posting through the outbox)
        can keep the loop writing into the void and never let ``connection_lost`` run.
        """
        if not self.writer.gone():
            return False
        if not self.complete:
            self.feed_disconnect()  # as connection_lost will: receive() says so too
        return True

    def _finish(self) -> None:
        self.complete = True
        if self.state.access_log:
            self.state.access_logger.info(*access_line(self))
        if self._wake is not None:  # an app waiting in receive() learns the response ended
            self._wake.set()
        self.owner.cycle_done(self)


async def run_cycle(cycle: RequestCycle, app: Any) -> None:
    """Run the app for one cycle; turn its failures into a 500 or a closed connection."""
    logger = cycle.state.error_logger
    try:
        await app(cycle.scope, cycle.receive, cycle.send)
    except ClientDisconnected:
        logger.debug("the client went away during the response")
    except Exception as exc:
        if cycle.disconnected and isinstance(exc, OSError):
            logger.debug("the client went away during the response: %r", exc)
        else:
            extra = request_extra(cycle.scope)
            logger.error("Exception in ASGI application", exc_info=exc, extra=extra)
        _fail(cycle)
    else:
        if cycle.disconnected and not cycle.complete:
            # The client left first: an app that stops answering it did nothing wrong.
            logger.debug("the app returned after the client went away")
        elif not cycle.started:
            logger.error("ASGI callable returned without starting a response")
            _fail(cycle)
        elif not cycle.complete:
            logger.error("ASGI callable returned without completing the response")
            _fail(cycle)
    finally:
        # The task leaves the server's set itself: cheaper than a done-callback per request.
        cycle.state.tasks.discard(cycle.task)
        if cycle.state.metrics is not None:
            cycle.state.metrics.request_done(cycle)


def _fail(cycle: RequestCycle) -> None:
    if cycle.complete or cycle.disconnected or cycle._gone():
        return
    if not cycle._head_sent:
        # The head goes out with the first body bytes, so until then (even after
        # http.response.start) the client can still get a clean 500 with no body.
        cycle._prepare_head(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        cycle._close = True
        cycle._write(b"", True)
        cycle._finish()
    else:
        # The head is gone: all that is honest now is to end it so the client sees truncation.
        cycle.complete = True
        cycle.writer.abandon()
        cycle.owner.cycle_done(cycle)
