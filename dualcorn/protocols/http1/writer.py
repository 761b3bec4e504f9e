"""HTTP/1.1 responses on the wire: the :class:`~dualcorn.protocols.writer.ResponseWriter` of
every HTTP/1.1 connection.

Theory of operation: one writer per connection, made ready for each request by
:meth:`HTTP1Writer.begin` (HTTP/1.1 answers one request at a time, RFC 9112 9.3.2).  The cycle
hands it the checked head (:meth:`start`), which is held until the first body bytes show how the
body is delimited (RFC 9112 6.3): a length known by then is a Content-Length, an unknown one
is chunked coding, or, for HTTP/1.0, the close of the connection.  A small response is then one
``transport.write`` of head and body.  Keep-alive is decided here, from the request (RFC 9112
9.3), the app's ``Connection: close`` and the framing; the connection reads ``keep_alive``
once the response is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dualcorn.protocols.http1.wire import CONTINUE_100, LAST_CHUNK, STATUS_LINES, chunk, status_line
from dualcorn.protocols.writer import ClientDisconnected, file_blocks

if TYPE_CHECKING:
    from dualcorn.protocols.flow import WriteFlow
    from dualcorn.protocols.state import ServerState

__all__ = ["HTTP1Writer"]

# RFC 9110 6.4.1: 204 and 304 responses never carry content.
_NO_CONTENT = frozenset({204, 304})


class HTTP1Writer:
    """The HTTP/1.1 side of one connection's responses; see the module notes."""

    __slots__ = (
        "_chunked",
        "_head",
        "_no_body",
        "_unknown",
        "field_cache",
        "gone",
        "head_request",
        "http10",
        "keep_alive",
        "state",
        "transport",
        "write_flow",
    )  # fmt: skip

    def __init__(
        self, transport: asyncio.Transport, write_flow: WriteFlow, state: ServerState
    ) -> None:
        self.transport = transport
        # ResponseWriter.gone(): the transport's own method, called per body message.
        self.gone: Callable[[], bool] = transport.is_closing
        self.write_flow = write_flow
        self.state = state
        # Checked header lines by (name, value), shared by every HTTP/1.1 connection.
        self.field_cache = state.header_lines
        self.keep_alive = True
        self.head_request = self.http10 = self._chunked = self._no_body = False
        self._unknown = False  # the length is unknown: the first body decides the framing
        # The head held by start() until the first body: (status, fields, length, replaced).
        self._head: tuple[int, list[Any], int | None, set[bytes] | None] | None = None

    def begin(self, head_request: bool, http10: bool, keep_alive: bool) -> None:
        """Make ready for the response to the next request."""
        self.head_request = head_request
        self.http10 = http10
        self.keep_alive = keep_alive
        self._chunked = self._unknown = False
        self._head = None

    # --- ResponseWriter ------------------------------------------------------------------

    def encode_field(self, name: bytes, value: bytes) -> bytes:
        return b"%s: %s\r\n" % (name, value)

    def interim(self, status: int, fields: list[Any]) -> None:
        # RFC 9110 15.2: a server must not send a 1xx to an HTTP/1.0 client.
        if self.http10 or self.transport.is_closing():
            return
        if status == 100 and not fields:
            self.transport.write(CONTINUE_100)
        else:
            self.transport.write(status_line(status) + b"".join(fields) + b"\r\n")

    def start(
        self,
        status: int,
        fields: list[Any],
        content_length: int | None,
        close: bool,
        replaced: set[bytes] | None,
    ) -> None:
        if close:
            self.keep_alive = False
        no_content = status in _NO_CONTENT
        self._no_body = self.head_request or no_content
        # Unknown: chunked (HTTP/1.1) or until the close (HTTP/1.0), as the first body says.
        self._unknown = content_length is None and not no_content
        self._head = (status, fields, content_length, replaced)

    def _head_bytes(self, end: bool) -> bytes:
        """The held head, framed now that the first body bytes show how the body ends."""
        assert self._head is not None
        status, fields, length, replaced = self._head
        self._head = None
        state = self.state
        if replaced is None:
            defaults = state.default_head
        else:
            defaults = b"".join(
                line + b"\r\n"
                for line in state.default_head.split(b"\r\n")
                if line and line.split(b":", 1)[0].lower() not in replaced
            )
        date = b""
        if state.date is not None and (replaced is None or b"date" not in replaced):
            date = b"date: %s\r\n" % state.date.value()
        if length is not None:
            framing = b"content-length: %d\r\n" % length
        else:
            framing = b""
            if self._unknown and not end:
                if self.http10:
                    # RFC 9112 6.3 (8): without a length, an HTTP/1.0 body ends at the close.
                    self.keep_alive = False
                elif not self.head_request:
                    self._chunked = True
                    framing = b"transfer-encoding: chunked\r\n"
            # (An empty HEAD response of unknown length announces no framing.)
        if not self.keep_alive:
            framing += b"connection: close\r\n"
        elif self.http10:
            framing += b"connection: keep-alive\r\n"
        line = STATUS_LINES.get(status) or status_line(status)
        return b"%s%s%s%s%s\r\n" % (line, date, defaults, b"".join(fields), framing)

    def body(self, data: bytes, end: bool) -> bool:
        head = self._head_bytes(end) if self._head is not None else b""
        if self._no_body:
            if head:
                self.transport.write(head)
            return self.write_flow.paused
        if self._chunked:
            if data:
                data = chunk(data)
            if end:
                data += LAST_CHUNK
        if head:
            self.transport.write(head + data)  # a small response: one write
        elif data:
            self.transport.write(data)
        return self.write_flow.paused

    async def sendfile(self, file: Any, offset: int, count: int) -> None:
        """ASGI "http.response.zerocopysend" extension, through ``loop.sendfile``."""
        if self._head is not None:
            self.body(b"", False)
        if self._no_body:
            return
        transport = self.transport
        if self._chunked:
            transport.write(b"%x\r\n" % count)
        try:
            await asyncio.get_running_loop().sendfile(transport, file, offset, count)
        except (NotImplementedError, AttributeError, RuntimeError):
            # uvloop and TLS transports have no sendfile: copy blocks (see file_blocks).
            await self._copy(file.fileno(), offset, count)
        if self._chunked and not transport.is_closing():
            transport.write(b"\r\n")

    async def _copy(self, fd: int, offset: int, count: int) -> None:
        transport = self.transport
        async for block in file_blocks(fd, offset, count):
            if transport.is_closing():  # lost while the block was read in a thread
                raise ClientDisconnected("the client disconnected")
            transport.write(block)
            if self.write_flow.paused and not await self.drain():
                self.state.error_logger.debug("the client read nothing in --timeout-send; closing")
                self.abort()
                raise ClientDisconnected("the client read nothing in --timeout-send")
            if transport.is_closing():
                raise ClientDisconnected("the client disconnected")

    def trailers(self, fields: list[Any]) -> None:
        if self._head is not None:
            self.body(b"", False)
        # RFC 9112 7.1.2: the last chunk, then the trailer section.  A body delimited by
        # its length or by the close has no place for them: they are dropped.
        if self._chunked and not self.transport.is_closing():
            self.transport.write(b"0\r\n%s\r\n" % b"".join(fields))

    def abandon(self) -> None:
        # The client sees the truncation only as the connection closing (RFC 9112 8).
        self.keep_alive = False

    async def drain(self) -> bool:
        return await self.write_flow.drain(self.state.config.timeout_send)

    def abort(self) -> None:
        self.transport.abort()
