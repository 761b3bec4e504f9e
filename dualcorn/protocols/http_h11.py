"""HTTP/1.1 connections parsed by h11 (pure Python, strict).

h11 reads the request: head, Content-Length or chunked body, trailers.  dualcorn writes the
response itself (see :mod:`dualcorn.protocols.wire`), so each request gets a fresh
``h11.Connection`` whose server side never sends: when a response ends, the bytes h11 buffered
past the request (a pipelined next request) move to a new parser through ``trailing_data``.
Pipelined requests are thus answered strictly in order, one at a time, and reading pauses while
one waits (h11's PAUSED), so a pipelining client cannot make the server buffer without bound.
"""

from __future__ import annotations

import h11

from dualcorn.errors import ProtocolError
from dualcorn.protocols.connection import HTTPConnection
from dualcorn.protocols.flow import PIPELINE
from dualcorn.protocols.head import HeadScanner, check_request
from dualcorn.protocols.state import ServerState

__all__ = ["H11Protocol"]

_Request = h11.Request
_Data = h11.Data
_EndOfMessage = h11.EndOfMessage
_NEED_DATA = h11.NEED_DATA
_PAUSED = h11.PAUSED
# h11 decides keep-alive from the request alone and puts an HTTP/1.0 client (even one that
# sent "Connection: keep-alive") in MUST_CLOSE instead of DONE once its request ends.  dualcorn
# makes the keep-alive decision itself, so both states mean "this request is complete".
_REQUEST_DONE = (h11.DONE, h11.MUST_CLOSE)


class H11Protocol(HTTPConnection):
    def __init__(self, state: ServerState) -> None:
        super().__init__(state)
        self._head_limit = state.config.limit_request_head
        self.scanner = HeadScanner(self._head_limit)
        self.parser = self._new_parser()
        self._upgrade: tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]] | None = None

    def _new_parser(self) -> h11.Connection:
        # h11 bounds what it buffers of an incomplete event (a head, a chunk header); the
        # HeadScanner bounds a complete head that arrived in a single read.
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._head_limit)

    def data_received(self, data: bytes) -> None:
        if not self.scanner.done and not self.scan_head(data):
            return
        self.parser.receive_data(data)
        self._handle_events()

    def _handle_events(self) -> None:
        parser = self.parser
        while True:
            if parser.their_state is h11.MUST_CLOSE:
                # h11 would refuse any byte after such a request ("Got data when expecting
                # EOF"); like PAUSED, keep it for the next parser if the connection persists.
                if parser.trailing_data[0]:
                    self.read_flow.pause(PIPELINE)
                return
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                self.reject(ProtocolError(str(exc), exc.error_status_hint))
                return
            if event is _NEED_DATA:
                return
            if event is _PAUSED:
                if self._upgrade is not None:
                    # h11 pauses after an Upgrade request (MIGHT_SWITCH_PROTOCOL); what it read
                    # past the head belongs to the WebSocket.
                    method, target, version, headers = self._upgrade
                    self._upgrade = None
                    self.upgrade_websocket(method, target, version, headers,
                                           parser.trailing_data[0])  # fmt: skip
                    return
                # A pipelined request waits until the current response is complete.
                self.read_flow.pause(PIPELINE)
                return
            kind = type(event)
            if kind is _Data:
                if self.cycle is not None:
                    self.cycle.feed_body(event.data)  # type: ignore[union-attr]
            elif kind is _EndOfMessage:
                # Trailer fields (event.headers) are dropped: they never join the request
                # headers (RFC 9112 7.1.2 lets a recipient discard them).
                if self.cycle is not None:
                    self.cycle.feed_end()
            elif kind is _Request:
                if not self._on_request(event):  # type: ignore[arg-type]
                    return
            else:  # ConnectionClosed: the client half-closed between requests
                if self.cycle is None:
                    self.transport.close()
                return

    def _on_request(self, event: h11.Request) -> bool:
        headers = list(event.headers)
        try:
            facts = check_request(
                event.http_version,
                event.target,
                headers,
                max_target=self.config.limit_request_line,
                max_fields=self.config.limit_request_fields,
            )
        except ProtocolError as exc:
            self.reject(exc)
            return False
        if self.wants_websocket(headers):
            self._upgrade = (event.method, event.target, event.http_version, headers)
            return True
        cycle = self.start_request(event.method, event.target, event.http_version, headers, facts)
        return cycle is not None

    def next_request(self) -> bool:
        parser = self.parser
        if parser.their_state not in _REQUEST_DONE:
            return False
        pending, closed = parser.trailing_data
        self.parser = parser = self._new_parser()
        scanner = self.scanner
        scanner.reset()
        if pending:
            self.head_started()
            try:
                scanner.feed(pending)
            except ProtocolError as exc:
                self.reject(exc)
                return True
            parser.receive_data(pending)
        if closed:
            parser.receive_data(b"")
        if pending or closed:
            self._handle_events()
        return True
