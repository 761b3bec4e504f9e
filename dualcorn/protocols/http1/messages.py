"""The HTTP/1.1 message loop shared by every parser: heads, bodies, pipelining.

Theory of operation: bytes arrive in :meth:`HTTP1Connection.data_received`.  While no request
is in flight, the loop looks for the next head (CRLF CRLF), checks its raw bytes and its
request line, hands the header section to the parser subclass to tokenize (:meth:`fields`),
runs the one :mod:`~dualcorn.protocols.policy` on the result and starts the request.  The body
is then framed here (Content-Length or chunked), whatever the parser.  While a request is in
flight, bytes past its body stay unparsed and reading pauses: a client that pipelines and never
reads holds at most one read of raw bytes, never a queue of parsed requests (issue 12).

A client may half-close once it has sent its requests (RFC 9112 9.6): :meth:`eof_received`
keeps the connection open for writing while the request in flight, and any complete request
still buffered behind it, are answered; the connection closes after the last answer.  A
request whose head or body the end of the stream cut short is dropped without an answer.
"""

from __future__ import annotations

from dualcorn.errors import ProtocolError
from dualcorn.protocols.flow import EOF, PIPELINE
from dualcorn.protocols.http1.connection import HTTPConnection
from dualcorn.protocols.http1.framing import ChunkedDecoder, check_partial_head, check_raw_head
from dualcorn.protocols.policy import check_head, split_request_line
from dualcorn.protocols.request_head import RequestHead
from dualcorn.protocols.state import ServerState

__all__ = ["HTTP1Connection"]

_HEAD, _LENGTH, _CHUNKED, _DONE = range(4)


class HTTP1Connection(HTTPConnection):
    """An HTTP/1.1 connection whose parser subclass only tokenizes header fields."""

    def __init__(self, state: ServerState) -> None:
        super().__init__(state)
        config = self.config
        self._head_limit = config.limit_request_head
        self._line_limit = config.limit_request_line
        self._field_limit = config.limit_request_field_size
        self._max_fields = config.limit_request_fields
        self._underscores = config.header_map
        self._min_rate = config.timeout_min_rate
        self._buf = bytearray()  # bytes not yet framed (bounded: reading pauses)
        self._part = _HEAD
        self._left = 0  # Content-Length bytes still to come
        self._chunks: ChunkedDecoder | None = None

    # --- Parser subclass -----------------------------------------------------------------

    def fields(self, head: bytes, version: bytes) -> list[tuple[bytes, bytes]]:
        """Tokenize the header section of ``head`` (its request line is already checked).

        Returns (lower-case name, value without surrounding OWS) pairs; raises ProtocolError
        for a field the parser's grammar refuses.
        """
        raise NotImplementedError

    # --- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        if buf:
            start = len(buf)
            buf += data
            self._run(buf, start)
        else:
            self._run(data, 0)
        if self.cycle is None and self._min_rate:
            # A head still arriving: its bytes extend the head timeout (--timeout-min-rate).
            self._credit_head(len(data))

    def eof_received(self) -> bool | None:
        """The client sent its FIN: True keeps the transport open to write the answers due.

        Reading stops while a request is in flight and bytes wait behind it, so the end of the
        stream is seen only once every byte before it was framed: what is left is at most an
        incomplete head (no request yet) or an incomplete body (the app's receive() returns
        http.disconnect, as it did before half-closes were served).  Both close at once, as
        does an idle keep-alive connection.  An app that waits in receive() past its body
        (for a disconnect) still gets one: see RequestCycle.feed_eof.  TLS transports cannot
        half-close (asyncio and uvloop ignore the return value and close): returning None
        keeps their behaviour.
        """
        self.eof = True
        transport = self.transport
        if transport.get_extra_info("ssl_object") is not None:
            return None
        if self.cycle is None or self._part != _HEAD or transport.is_closing():
            # The transport closes on None; a response still buffered (an idle keep-alive
            # connection's last) must not keep it open for ever if the client never reads.
            self.close_after_writing()
            return None
        self.read_flow.pause(EOF)  # for good: there is nothing more to read
        self.cycle.feed_eof()
        return True

    # --- The loop ------------------------------------------------------------------------

    def _run(self, data: bytes | bytearray, new: int) -> None:
        """Frame ``data``; bytes from ``new`` on were not scanned for a head before."""
        pos = 0
        end = len(data)
        try:
            while pos < end:
                part = self._part
                if part == _LENGTH:
                    take = min(self._left, end - pos)
                    self._left -= take
                    if self.cycle is not None:
                        self.cycle.feed_body(bytes(data[pos : pos + take]))
                    pos += take
                    if self._left:
                        break
                    self._end_body()
                elif part == _CHUNKED:
                    assert self._chunks is not None
                    out: list[bytes] = []
                    pos = self._chunks.feed(data, pos, out)
                    # One call into the cycle per read, however many chunks it held: the work
                    # per one-byte chunk stays one regex match (issue 12, tiny chunks).
                    if out and self.cycle is not None:
                        self.cycle.feed_body(b"".join(out))
                    if not self._chunks.done:
                        break
                    self._end_body()
                elif self.cycle is not None or self.transport.is_closing():
                    # A pipelined request waits, unparsed, until the answer ahead of it is
                    # complete (RFC 9112 9.3.2: responses go out in request order).
                    self.read_flow.pause(PIPELINE)
                    break
                else:
                    after = self._head(data, pos, new)
                    if after < 0:
                        return  # refused, or the connection became a WebSocket
                    if after == pos:
                        break  # the head is incomplete
                    pos = after
                if self.transport.is_closing():
                    return
        except ProtocolError as exc:
            self._buf.clear()
            self.reject(exc)
            return
        buf = self._buf
        if data is buf:
            del buf[:pos]
        elif pos < end:
            buf += data[pos:]

    def _head(self, data: bytes | bytearray, pos: int, new: int) -> int:
        """Read one head from ``data[pos:]``: its end, ``pos`` if incomplete, -1 if done with."""
        # RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF) received before
        # the request-line; any number is ignored (the head timeout bounds them).
        while data.startswith(b"\r\n", pos):
            pos += 2
        end = len(data)
        if pos >= end:
            return pos
        stop = data.find(b"\r\n\r\n", new - 3 if new - 3 > pos else pos)
        if stop < 0:
            # Only a head still arriving needs its timeout: a whole one starts the request,
            # which stops the timer at once (most heads arrive in one read).
            self.head_started()
            if end - pos > self._head_limit:
                raise ProtocolError("the request head is larger than the limit", 431)
            check_partial_head(data, max(new - 1, pos), end)
            return pos  # incomplete: the caller sees no progress past the empty lines
        if stop + 4 - pos > self._head_limit:
            raise ProtocolError("the request head is larger than the limit", 431)
        head = (
            data
            if pos == 0 and stop + 4 == end and type(data) is bytes
            else bytes(data[pos : stop + 4])
        )
        if head[:4] == b"PRI " and self._http2(data, pos):
            return -1
        check_raw_head(head, self._field_limit)
        line_end = head.index(b"\r\n")
        method, target, version = split_request_line(head[:line_end], self._line_limit)
        request, facts = check_head(
            RequestHead(method, target, version, self.fields(head, version)),
            max_fields=self._max_fields,
            underscores=self._underscores,
        )
        pos = stop + 4
        if facts.upgrade and not facts.has_body and self.wants_websocket(request.headers):
            trailing = bytes(data[pos:])
            self._buf.clear()
            self.upgrade_websocket(request, trailing)
            return -1
        if facts.chunked:
            self._part = _CHUNKED
            self._chunks = ChunkedDecoder(self._head_limit)
        elif facts.content_length:
            self._part = _LENGTH
            self._left = facts.content_length
        else:
            self._part = _DONE
        cycle = self.start_request(request, facts)
        if cycle is None:
            self._buf.clear()
            return -1
        if self._part == _DONE:
            self._part = _HEAD
        return pos

    def _http2(self, data: bytes | bytearray, pos: int) -> bool:
        """RFC 9113 3.3: a connection that begins with the HTTP/2 preface is HTTP/2 (h2c
        with prior knowledge); its bytes from the preface on go to the HTTP/2 protocol."""
        if not data.startswith(b"PRI * HTTP/2.0\r\n\r\n", pos):
            return False
        from dualcorn.protocols.http2 import prior_knowledge

        rest = bytes(data[pos:])
        self._stop_timer()
        if not prior_knowledge(self, rest):
            return False  # --no-http2: answered as HTTP/1.1 (505)
        self._buf.clear()
        return True

    def _end_body(self) -> None:
        self._part = _HEAD
        self._chunks = None
        if self.cycle is not None:
            self.cycle.feed_end()

    # --- HTTPConnection ------------------------------------------------------------------

    def next_request(self) -> bool:
        if self._part != _HEAD:
            # The app answered before reading all of the body: the rest of it would be read
            # as the next request, so the connection ends instead (RFC 9112 9.3).
            return False
        buf = self._buf
        if buf:
            self._run(buf, 0)
        # After the client's FIN a body cut short will not be completed: drop its request.
        return not (self.eof and self._part != _HEAD)
