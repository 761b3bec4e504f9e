"""HTTP/1.1 connections parsed by httptools (llhttp, in C): the fast path.

llhttp calls back synchronously while it parses, and parses everything it is fed, so a
pipelined request can be complete before the one ahead of it has been answered.  Such a request
waits in a short queue (reading pauses until the answer ahead of it is done), then starts
exactly as if it had just arrived: answers stay in order and nothing is buffered without bound.

llhttp is strict about line endings, folding and Content-Length, but lenient where h11 is
not (a missing or repeated Host, ``HTTP/2.0``, ``Transfer-Encoding: gzip, chunked``); those are
refused by :func:`~dualcorn.protocols.head.check_request`, the same checks the h11 protocol runs,
so both protocols give the same status for the same bad request.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import httptools

from dualcorn.errors import ProtocolError
from dualcorn.protocols.connection import HTTPConnection
from dualcorn.protocols.cycle import RequestCycle
from dualcorn.protocols.flow import PIPELINE
from dualcorn.protocols.head import HeadFacts, HeadScanner, check_request
from dualcorn.protocols.state import ServerState

__all__ = ["HttpToolsProtocol"]


class _Queued:
    """A pipelined request parsed while the one ahead of it is still being answered."""

    __slots__ = ("body", "ended", "facts", "headers", "method", "target", "version")

    def __init__(
        self, method: bytes, target: bytes, version: bytes, headers: list[Any], facts: HeadFacts
    ) -> None:
        self.method, self.target, self.version = method, target, version
        self.headers, self.facts = headers, facts
        self.body: list[bytes] = []
        self.ended = False

    def feed_body(self, data: bytes) -> None:
        self.body.append(data)

    def feed_end(self) -> None:
        self.ended = True


class _Refused(Exception):
    """Raised inside a parser callback after the request was refused: stop parsing."""


def _status_for(error: httptools.HttpParserError) -> int:
    text = str(error)
    if isinstance(
        error, httptools.HttpParserInvalidURLError | httptools.HttpParserInvalidMethodError
    ):
        return 400
    # RFC 9112 6.1: a transfer coding the server does not understand gets 501.
    if "Transfer-Encoding" in text and "Content-Length" not in text:
        return 501
    if "HTTP version" in text:
        return 505
    return 400


class HttpToolsProtocol(HTTPConnection):
    def __init__(self, state: ServerState) -> None:
        super().__init__(state)
        self._limit = state.config.limit_request_head
        self.scanner = HeadScanner(self._limit, strict=False)
        self.parser = httptools.HttpRequestParser(self)
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._head_done = False
        self._sink: RequestCycle | _Queued | None = None  # where body bytes go
        self._queue: deque[_Queued] = deque()
        self._message_complete = True
        self._refusal: ProtocolError | None = None  # waits for the answers ahead of it
        self._upgrade: tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]] | None = None

    def data_received(self, data: bytes) -> None:
        if not self.scanner.done and not self.scan_head(data):
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self._upgrade is not None:
                # llhttp stops at the end of an Upgrade request; what follows in this read
                # already belongs to the WebSocket (RFC 6455 4.2.2: the client may send frames
                # right behind its handshake).
                method, target, version, headers = self._upgrade
                self._upgrade = None
                self.upgrade_websocket(method, target, version, headers, data[exc.args[0] :])
                return
            # Any other upgrade is served as an ordinary request; bytes after the head belong
            # to no HTTP request, so the connection ends with it.
            if self._sink is not None:
                self._sink.feed_end()
            if self.cycle is not None:
                self.cycle.keep_alive = False
        except httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            if isinstance(context, ProtocolError):
                self._refuse(context)
            elif not isinstance(context, _Refused):
                raise
        except httptools.HttpParserError as exc:
            self._refuse(ProtocolError(str(exc), _status_for(exc)))

    def _refuse(self, error: ProtocolError) -> None:
        """Refuse the request being parsed, but answer the requests ahead of it first."""
        cycle = self.cycle
        if cycle is None or self._sink is cycle:
            self.reject(error)  # the broken request is the one being answered
            return
        if isinstance(self._sink, _Queued):
            self._queue.remove(self._sink)  # half-parsed: it will never be served
        self._sink = None
        self._refusal = error
        self.read_flow.pause(PIPELINE)

    # --- llhttp callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._target = b""
        self._headers = []
        self._head_size = 0
        self._head_done = False
        self._message_complete = False

    def on_url(self, url: bytes) -> None:
        self._target += url
        self._grow(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            # llhttp reports a chunked body's trailer fields through this callback too; they
            # are dropped (RFC 9112 7.1.2 allows it) and never join the request's headers,
            # which the app already holds.
            return
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._limit:
            raise ProtocolError("the request head is larger than the limit", 431)
        self._headers.append((name.lower(), value))

    def _grow(self, size: int) -> None:
        # Counted here too: a pipelined head that arrived behind another in one read was not
        # seen by the HeadScanner.
        self._head_size += size
        if self._head_size > self._limit:
            raise ProtocolError("the request head is larger than the limit", 431)

    def on_headers_complete(self) -> None:
        self._head_done = True
        parser = self.parser
        version = parser.get_http_version().encode("ascii")
        method = parser.get_method()
        facts = check_request(
            version,
            self._target,
            self._headers,
            max_target=self.config.limit_request_line,
            max_fields=self.config.limit_request_fields,
            check_values=False,  # llhttp refuses control characters in values itself
        )
        if self.cycle is None and not self._queue:
            if self.wants_websocket(self._headers):
                self._upgrade = (method, self._target, version, self._headers)
                return
            self._sink = self.start_request(method, self._target, version, self._headers, facts)
            if self._sink is None:
                raise _Refused
        else:
            queued = _Queued(method, self._target, version, self._headers, facts)
            self._queue.append(queued)
            self._sink = queued
            self.read_flow.pause(PIPELINE)

    def on_body(self, body: bytes) -> None:
        if self._sink is not None:
            self._sink.feed_body(body)

    def on_message_complete(self) -> None:
        self._message_complete = True
        if self._sink is not None:
            self._sink.feed_end()
            self._sink = None
        self.scanner.reset()

    # --- HTTPConnection ------------------------------------------------------------------

    def next_request(self) -> bool:
        if not self._queue:
            if self._refusal is not None:
                self.reject(self._refusal)
                return True
            return self._message_complete
        queued = self._queue.popleft()
        cycle = self.start_request(
            queued.method, queued.target, queued.version, queued.headers, queued.facts
        )
        if cycle is None:
            return True
        for data in queued.body:
            cycle.feed_body(data)
        if queued.ended:
            cycle.feed_end()
        elif self._sink is queued:
            self._sink = cycle
        if not self._queue:
            self.read_flow.resume(PIPELINE)
        return True
