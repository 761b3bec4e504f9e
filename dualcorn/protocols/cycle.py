"""One HTTP request/response exchange, driven through the ASGI 3 ``http`` interface.

A protocol (h11 or httptools) parses the request, builds the scope and creates a
:class:`RequestCycle`; it then *feeds* the cycle body bytes, the end of the body, or a disconnect.
The app *pulls* the body with ``receive`` and *pushes* the response with ``send``.  The cycle
enforces the ASGI message order, serializes the response itself (one ``transport.write`` for the
head and a whole small body), and reports back to the protocol through :class:`Owner`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Protocol

from dualcorn.access_format import request_extra
from dualcorn.errors import AppContractError
from dualcorn.protocols.flow import BODY, ReadFlow, WriteFlow
from dualcorn.protocols.logline import access_line
from dualcorn.protocols.state import ServerState
from dualcorn.protocols.wire import (
    CONNECTION,
    CONTENT_LENGTH,
    CONTINUE_100,
    DATE,
    DEFAULT,
    HEADER_CACHE_SIZE,
    LAST_CHUNK,
    PLAIN,
    chunk,
    classify_header,
    status_line,
)
from dualcorn.protocols.writer import ClientDisconnected

__all__ = ["ClientDisconnected", "Owner", "RequestCycle", "run_cycle"]

_DISCONNECT = {"type": "http.disconnect"}
# RFC 9110 6.4.1: 1xx, 204 and 304 responses never carry content.
_NO_CONTENT = frozenset({204, 304})
_SENDFILE_BLOCK = 256 * 1024


_NOWAIT = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+: preadv fails instead of blocking


def _read_cached(fd: int, size: int, offset: int) -> memoryview | None:
    """Up to ``size`` bytes at ``offset`` if the page cache has them; None if it does not."""
    if _NOWAIT is None:
        return None
    buffer = bytearray(size)  # a fresh buffer: the transport may keep the view until sent
    try:
        read = os.preadv(fd, [buffer], offset, _NOWAIT)
    except OSError:  # EAGAIN (not cached) or EOPNOTSUPP (a file system without RWF_NOWAIT)
        return None
    return memoryview(buffer)[:read]


class Owner(Protocol):
    """What a cycle needs from the connection that created it."""

    transport: asyncio.Transport
    read_flow: ReadFlow
    write_flow: WriteFlow

    def cycle_done(self, cycle: RequestCycle) -> None: ...

    def body_stalled(self) -> None: ...

    def body_too_large(self) -> None: ...


class RequestCycle:
    __slots__ = (
        "_body",
        "_body_allowance",
        "_body_done",
        "_body_limit",
        "_body_seen",
        "_chunked",
        "_client_done",
        "_declared_length",
        "_expect_100",
        "_head",
        "_head_written",
        "_more_body",
        "_wake",
        "bytes_sent",
        "complete",
        "disconnected",
        "head_request",
        "http10",
        "keep_alive",
        "owner",
        "response_headers",
        "scope",
        "start_time",
        "started",
        "state",
        "status",
        "task",
    )  # fmt: skip

    def __init__(
        self,
        scope: dict[str, Any],
        owner: Owner,
        state: ServerState,
        *,
        keep_alive: bool,
        expect_100: bool,
        more_body: bool,
    ) -> None:
        self.scope = scope
        self.task: asyncio.Task[None] | None = None  # set by the connection that starts it
        self.owner = owner
        self.state = state
        self.keep_alive = keep_alive
        self.head_request = scope["method"] == "HEAD"
        self.http10 = scope["http_version"] == "1.0"
        self.start_time = time.monotonic()
        self.started = self.complete = self.disconnected = False
        self.status = 0
        self._expect_100 = expect_100
        self._more_body = more_body
        self._body = bytearray()
        self._body_done = False  # the final http.request message was delivered
        self._client_done = False  # the client half-closed after the whole request
        self._body_seen = 0
        self._body_limit = state.config.limit_request_body
        self._body_allowance = state.config.timeout_body_read
        self._wake: asyncio.Event | None = None
        self._head = b""
        self._head_written = self._chunked = False
        self._declared_length: int | None = None
        self.bytes_sent = 0
        self.response_headers: Any = ()  # the app's, for the access log's %({name}o)s

    # --- Fed by the protocol ------------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        self._body += data
        self._body_seen += len(data)
        if self._body_limit is not None and self._body_seen > self._body_limit:
            # Checked as bytes arrive, so a chunked body is capped like a declared one.
            self.owner.body_too_large()  # answers 413 if it can, and closes
            return
        if len(self._body) > self.state.config.read_high_water:
            self.owner.read_flow.pause(BODY)
        self._notify()

    def feed_end(self) -> None:
        self._more_body = False
        self._notify()

    def feed_disconnect(self) -> None:
        self.disconnected = True
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
                self.owner.transport.write(CONTINUE_100)
        while True:
            if self.disconnected or self.body_over_limit:
                return _DISCONNECT
            if self._body or (self._body_done is False and not self._more_body):
                data = bytes(self._body)
                self._body.clear()
                self.owner.read_flow.resume(BODY)
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
                self.owner.transport.close()
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

    # --- ASGI send -----------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        if not self.started:
            if kind != "http.response.start":
                raise AppContractError(
                    f"expected 'http.response.start' first, but the app sent {kind!r}"
                )
            self._prepare_head(message)
            return
        if self.complete:
            raise AppContractError(f"the app sent {kind!r} after the response was complete")
        if self._gone():
            raise ClientDisconnected("the client disconnected")
        if kind == "http.response.body":
            body = message.get("body", b"")
            more = message.get("more_body", False)
            self._write_body(body, more)
            if more and self.owner.write_flow.paused:
                await self._drain()
            elif not more:
                self._finish()
        elif kind == "http.response.zerocopysend":
            more = message.get("more_body", False)
            await self._sendfile(message["file"], message.get("offset"), message.get("count"), more)
            if not more:
                self._write_body(b"", False)
                self._finish()
        elif kind == "http.response.pathsend":
            # ASGI "http.response.pathsend" extension: the whole file, then the end.
            loop = asyncio.get_running_loop()
            file = await loop.run_in_executor(None, open, message["path"], "rb")
            try:
                await self._sendfile(file, None, None, False)
            finally:
                file.close()
            self._write_body(b"", False)
            self._finish()
        else:
            raise AppContractError(f"expected 'http.response.body', but the app sent {kind!r}")

    def _prepare_head(self, message: dict[str, Any]) -> None:
        status = message["status"]
        # ASGI HTTP spec: http.response.start carries the final response.  RFC 9110 15.2: a 1xx
        # is interim (a 101 would switch a proxy to a tunnel, and a client would read the next
        # response as this one's), and 15: a status is three digits from 100 to 599.
        if type(status) is not int or not 200 <= status <= 599:
            raise AppContractError(f"invalid final response status {status!r} (200 to 599)")
        state = self.state
        lines: list[bytes] = []
        seen_default: set[bytes] | None = None  # default headers the app set itself
        date_given = False
        known = state.header_lines
        for name, value in message.get("headers", ()):
            if name == b"content-length" and type(value) is bytes and value.isdigit():
                # The one header that differs on nearly every response: skip the cache.
                self._content_length(status, value, lines)
                continue
            try:
                entry = known.get((name, value))
            except TypeError:  # unhashable (a bytearray): classify() says what is wrong
                entry = None
            if entry is None:
                entry = classify_header(name, value, state.default_names)
                if entry[0] != CONTENT_LENGTH and len(known) < HEADER_CACHE_SIZE:
                    known[(name, value)] = entry
            kind, line = entry
            if kind == PLAIN:
                lines.append(line)
            elif kind == CONTENT_LENGTH:
                self._content_length(status, value, lines)
            elif kind == CONNECTION:
                if b"close" in value.lower():
                    self.keep_alive = False
            elif kind == DATE:
                date_given = True
                lines.append(line)
            elif kind == DEFAULT:
                if seen_default is None:
                    seen_default = set()
                seen_default.add(name.lower())
                lines.append(line)
            # TRANSFER_ENCODING: framing belongs to the server; it chunks when the length is
            # unknown, so the app's own header is dropped.
        if seen_default is None:
            defaults = state.default_head
        else:
            defaults = b"".join(
                line + b"\r\n"
                for line in state.default_head.split(b"\r\n")
                if line and line.split(b":", 1)[0].lower() not in seen_default
            )
        if state.request_ids is not None:  # --request-id-header echoes the request's id
            lines.append(state.request_ids.echo_line(self.scope, message.get("headers", ())))
        self.response_headers = message.get("headers", ())
        date = b""
        if state.date is not None and not date_given:
            date = b"date: %s\r\n" % state.date.value()
        self.status = status
        self.started = True
        self._head = b"%s%s%s%s" % (status_line(status), date, defaults, b"".join(lines))

    def _content_length(self, status: int, value: bytes, lines: list[bytes]) -> None:
        if self._declared_length is not None:
            # RFC 9112 6.3 (5): two lengths make the response unreadable to every recipient.
            raise AppContractError("the app sent more than one Content-Length header")
        length = self._declared_length = int(value)
        if status == 204:
            # RFC 9110 8.6: a server MUST NOT send Content-Length in a 204.  "0" (Django's
            # CommonMiddleware adds it) is dropped; any other length means a body was meant.
            if length:
                raise AppContractError(f"a 204 response with Content-Length {length}")
            return
        lines.append(b"content-length: %d\r\n" % length)

    def _framing(self, body: bytes, more: bool) -> bytes:
        """Finish the head once the first body message shows how the body is delimited."""
        self._head_written = True
        extra = b""
        if self.status in _NO_CONTENT or self.status < 200:
            self._declared_length = 0
        elif self._declared_length is None:
            if not more:
                if not self.head_request or body:
                    extra = b"content-length: %d\r\n" % len(body)
                    self._declared_length = len(body)
            elif self.http10:
                # RFC 9112 6.3 (8): without a length, an HTTP/1.0 body ends when we close.
                self.keep_alive = False
            elif not self.head_request:
                self._chunked = True
                extra = b"transfer-encoding: chunked\r\n"
        if not self.keep_alive:
            extra += b"connection: close\r\n"
        elif self.http10:
            extra += b"connection: keep-alive\r\n"
        head = self._head + extra + b"\r\n"
        self._head = b""
        return head

    def _write_body(self, body: bytes, more: bool) -> None:
        no_body = self.head_request or self.status in _NO_CONTENT or self.status < 200
        declared = self._declared_length
        # Checked before the head is framed: if the first body message is already too long,
        # nothing has been written and the failure can still become a clean 500.
        if not no_body and declared is not None and self.bytes_sent + len(body) > declared:
            raise AppContractError(f"the app sent more body than its Content-Length of {declared}")
        head = self._framing(body, more) if not self._head_written else b""
        if no_body:
            if head:
                self.owner.transport.write(head)
            return
        self.bytes_sent += len(body)
        if self._chunked:
            if body:
                body = chunk(body)
            if not more:
                body += LAST_CHUNK
        if head:
            self.owner.transport.write(head + body)
        elif body:
            self.owner.transport.write(body)

    async def _sendfile(self, file: Any, offset: int | None, count: int | None, more: bool) -> None:
        """ASGI "http.response.zerocopysend" extension, through ``loop.sendfile``."""
        if offset is None:
            offset = file.tell()
        if count is None:
            count = os.fstat(file.fileno()).st_size - offset
        if not self._head_written:
            if not more and self._declared_length is None:
                # The file is the whole body: its size is the Content-Length.
                self._declared_length = count
                self._head += b"content-length: %d\r\n" % count
            self._write_body(b"", True)
        if self.head_request or self.status in _NO_CONTENT:
            return
        transport = self.owner.transport
        if self._chunked:
            transport.write(b"%x\r\n" % count)
        self.bytes_sent += count
        loop = asyncio.get_running_loop()
        try:
            await loop.sendfile(transport, file, offset, count)
        except (NotImplementedError, AttributeError, RuntimeError):
            # uvloop and TLS transports have no sendfile: copy blocks. A block already in the
            # page cache is read on the loop (RWF_NOWAIT never waits for the disk); any other
            # block is read in a thread, so a cold disk never stalls the loop.
            fd = file.fileno()
            left = count
            while left > 0:
                size = min(left, _SENDFILE_BLOCK)
                block: bytes | memoryview | None = _read_cached(fd, size, offset)
                if block is None:
                    block = await loop.run_in_executor(None, os.pread, fd, size, offset)
                if not block:
                    break
                if self._gone():  # lost while the block was read in a thread
                    raise ClientDisconnected("the client disconnected") from None
                left -= len(block)
                offset += len(block)
                transport.write(block)
                await self._drain()
        if self._chunked and not self._gone():
            transport.write(b"\r\n")

    async def _drain(self) -> None:
        """Wait for the client to read; nginx ``send_timeout``: a client that reads nothing
        for ``--timeout-send`` seconds is dropped, and ``send`` raises."""
        if not await self.owner.write_flow.drain(self.state.config.timeout_send):
            self.state.error_logger.debug("the client read nothing in --timeout-send; closing")
            self.owner.transport.abort()
            self.feed_disconnect()
        if self.disconnected or self._gone():
            raise ClientDisconnected("the client disconnected")

    def _gone(self) -> bool:
        """The transport is closing (a failed write, an abort): the client is gone.

        asyncio's transport closes itself when a write fails, but tells the protocol only on the
        loop's next turn (``connection_lost`` via ``call_soon``); until then it drops writes
        ("socket.send() raised exception.").  A send that would write into that gap must fail
        as a disconnect instead (ASGI HTTP spec: ``send`` raises ``OSError`` once the client has
        gone), or a producer that never has to wait (a WSGI thread posting through the outbox)
        can keep the loop writing into the void and never let ``connection_lost`` run.
        """
        if not self.owner.transport.is_closing():
            return False
        if not self.complete:
            self.feed_disconnect()  # as connection_lost will: receive() says so too
        return True

    def _finish(self) -> None:
        self.complete = True
        if (
            self._declared_length is not None
            and self.bytes_sent != self._declared_length
            and not self.head_request
            and self.status not in _NO_CONTENT
        ):
            self.state.error_logger.error(
                "the app declared Content-Length %d but sent %d bytes; closing the connection",
                self._declared_length,
                self.bytes_sent,
            )
            self.keep_alive = False
        if self.state.access_log:
            self.state.access_logger.info(*access_line(self))
        self._notify()
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
    cycle.keep_alive = False
    if not cycle._head_written:
        # The head goes out with the first body bytes, so until then (even after
        # http.response.start) the client can still get a clean 500 with no body.
        cycle._declared_length = None
        cycle._prepare_head(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        cycle._write_body(b"", False)
        cycle._finish()
    else:
        # The head is gone: all that is honest now is to close, so the client sees truncation.
        cycle.complete = True
        cycle.owner.transport.close()
        cycle.owner.cycle_done(cycle)
