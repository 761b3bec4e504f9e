"""The seam between the ASGI request cycle and the wire: what a protocol gives a cycle.

Theory of operation.  A protocol (the HTTP/1.1 message loop, an HTTP/2 stream) reads a request
head, builds its scope (:mod:`dualcorn.protocols.scope`) and creates a
:class:`~dualcorn.protocols.cycle.RequestCycle` with two objects of its own:

- a :class:`ResponseWriter`, which the cycle tells "start the response", "body bytes",
  "trailers" and "end"; the writer alone knows the wire (HTTP/1.1 framing or HTTP/2 frames)
  and its flow control (a TCP send buffer or an HTTP/2 window), so ``send`` waits on either
  the same way;
- a :class:`CycleOwner`, fed the other way: the protocol calls the cycle's ``feed_body``,
  ``feed_end`` and ``feed_disconnect`` as the request body arrives, and the cycle asks its
  owner to pause or resume reading (TCP reading, or withholding HTTP/2 WINDOW_UPDATEs).

What is protocol-neutral stays in the cycle: the ASGI message order, the checks on the app's
headers (:func:`classify_field`, cached per server), the content-length bookkeeping (too much
body is refused before it is written; a body shorter than its declared length ends the
response as :meth:`ResponseWriter.abandon`), the count of body bytes passed on (the access
log's ``%b``), the body limits and timeouts, the access line.  What depends on the wire is the
writer's: status lines, chunked coding, ``Connection`` headers, HTTP/1.0 rules, HEAD/204/304
body suppression on the wire, keep-alive.

A protocol starts a request so (HTTP/1.1 in ``protocols/http1``; HTTP/2 per stream)::

    scope = http_scope(connection_facts, head)              # dualcorn.protocols.scope
    cycle = RequestCycle(scope, owner, writer, state, expect_100=..., more_body=...)
    cycle.task = loop.create_task(run_cycle(cycle, state.app)); state.tasks.add(cycle.task)

then feeds it ``cycle.feed_body(data)``, ``cycle.feed_end()``, ``cycle.feed_disconnect()``
(``feed_eof`` is HTTP/1.1's half-close), and serves the next request on ``cycle_done``.

Order of calls on a writer, per response (the cycle guarantees it)::

    interim(100, ())*                      -- only before start
    start(...) (body(...) | sendfile(...))* [trailers(...)]   -- the last body has end=True
                                              unless trailers or abandon() follow
    drain() / gone() / abort()             -- at any time

``gone`` is called per body message: a writer may make it a callable attribute (HTTP/1.1's is
the transport's own ``is_closing``).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol

from dualcorn.errors import AppContractError

if TYPE_CHECKING:
    from dualcorn.protocols.cycle import RequestCycle

__all__ = [
    "CONNECTION",
    "CONTENT_LENGTH",
    "DATE",
    "DEFAULT",
    "HEADER_CACHE_SIZE",
    "PLAIN",
    "TRANSFER_ENCODING",
    "ClientDisconnected",
    "CycleOwner",
    "DateHeader",
    "ResponseWriter",
    "classify_field",
    "file_blocks",
    "validate_header",
]


class ClientDisconnected(OSError):
    """Raised by ``send`` once the client has gone (ASGI HTTP spec: an OSError subclass)."""


class ResponseWriter(Protocol):
    """Puts one response on the wire; one per request (HTTP/1.1 may reuse it per connection).

    ``fields`` are what :func:`classify_field` returned for the app's headers, encoded by
    :meth:`encode_field`: opaque to the cycle, so a writer keeps its own encoding (HTTP/1.1
    header lines, HTTP/2 name/value pairs) in the per-server ``field_cache``.
    """

    #: (name, value) -> (kind, encoded field); shared by every writer of one protocol in one
    #: server, at most HEADER_CACHE_SIZE entries (the cycle fills it).
    field_cache: dict[tuple[bytes, bytes], tuple[int, Any]]

    def encode_field(self, name: bytes, value: bytes) -> Any:
        """One checked response field in this writer's encoding (called on cache misses)."""
        ...

    def interim(self, status: int, fields: list[Any]) -> None:
        """An informational response (100 Continue, 103 Early Hints) before the final one.

        A writer drops what its peer cannot take (HTTP/1.0 has no 1xx, RFC 9110 15.2).
        """
        ...

    def start(
        self,
        status: int,
        fields: list[Any],
        content_length: int | None,
        close: bool,
        replaced: set[bytes] | None,
    ) -> None:
        """Record the final response head; it goes out with the first body bytes.

        ``status`` is checked (200-599); ``fields`` are encoded, without Content-Length,
        Transfer-Encoding, Connection or Date (``content_length`` says the length when known:
        the app's, or the whole body's when the first body message is the last; None
        means unknown, so HTTP/1.1 chunks or closes).  ``close``: the app or the cycle wants
        the connection closed after this response (HTTP/1.1 only).  ``replaced``: lower-case
        names of the server's default fields (date, server, ``--header``) that the app set
        itself, so the writer leaves its own out; None when there are none.  Called once,
        just before the first :meth:`body`, :meth:`sendfile` or :meth:`trailers`.
        """
        ...

    def body(self, data: bytes, end: bool) -> bool:
        """Write body bytes (``end``: the last); True if the caller must ``await drain()``.

        The cycle never gives more than ``content_length``; a writer drops body bytes the
        response must not carry (HEAD, 204, 304: RFC 9110 9.3.2, 15.3.5, 15.4.5).
        """
        ...

    async def sendfile(self, file: Any, offset: int, count: int) -> None:
        """Write ``count`` bytes of ``file`` from ``offset`` as body (zero-copy when it can).

        Not the end of the body: :meth:`body` with ``end`` follows.  Waits on flow control as
        it goes; raises :class:`ClientDisconnected` if the peer goes or stalls.
        """
        ...

    def trailers(self, fields: list[Any]) -> None:
        """End the body with trailer fields (ASGI ``http.response.trailers``); dropped where
        the framing cannot carry them (an HTTP/1.1 body not chunked)."""
        ...

    def abandon(self) -> None:
        """End a response that is not whole (an app that failed mid-body, or sent less than
        its Content-Length) so the client cannot take it as complete: HTTP/1.1 closes the
        connection once the bytes written are sent; HTTP/2 resets the stream."""
        ...

    async def drain(self) -> bool:
        """Wait until the peer can take more (TCP buffer, HTTP/2 window), at most
        ``--timeout-send`` (nginx ``send_timeout``); False if that passed first."""
        ...

    def gone(self) -> bool:
        """Whether the peer can no longer be written to (connection closing, stream reset)."""
        ...

    def abort(self) -> None:
        """Drop the connection (HTTP/1.1) or reset the stream (HTTP/2) at once."""
        ...


class CycleOwner(Protocol):
    """What a cycle needs from the protocol that feeds it the request body."""

    def pause_body(self) -> None:
        """The app has not read the body buffered past ``--read-high-water``: stop reading."""
        ...

    def resume_body(self) -> None:
        """The app read the buffered body: read again (called often; must be cheap)."""
        ...

    def body_stalled(self) -> None:
        """The body did not arrive in time (``--timeout-body-read``): end the request."""
        ...

    def body_too_large(self) -> None:
        """The body passed ``--limit-request-body``: answer 413 if still possible, and end."""
        ...

    def client_gone(self) -> None:
        """The client finished sending and the app waits for a disconnect: end the request."""
        ...

    def cycle_done(self, cycle: RequestCycle) -> None:
        """The response is complete: the protocol may serve the next request."""
        ...


# RFC 9110 5.1: field-name = token; tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" /
# "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+\Z")
# RFC 9110 5.5: a field value is VCHAR, obs-text, SP and HTAB.  CR, LF and NUL would let an
# app (or the user data it echoes) split the response; other control bytes (\x01, \x7f) make
# parsers downstream disagree, so every one is refused.
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def validate_header(name: object, value: object) -> None:
    """Refuse a response header that is not bytes, not a token, or could split the response."""
    if not isinstance(name, bytes) or not isinstance(value, bytes):
        raise AppContractError(
            f"response header names and values must be bytes, got {type(name).__name__} "
            f"{name!r}: {type(value).__name__}"
        )
    if _TOKEN.match(name) is None:
        raise AppContractError(f"invalid response header name {name!r} (RFC 9110 5.1: a token)")
    if _FORBIDDEN_IN_VALUE.search(value) is not None:
        raise AppContractError(
            f"the value of response header {name!r} contains a control byte "
            "(CR, LF or NUL would split the response; RFC 9110 5.5)"
        )


# What a response field means to the server (see classify_field).
PLAIN, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, DATE, DEFAULT = range(6)
# Checked fields are remembered per server, up to this many distinct (name, value) pairs:
# most responses repeat the same few ("content-type: text/plain"), and a bound keeps
# per-response values (cookies) from growing the table.
HEADER_CACHE_SIZE = 512


def classify_field(
    name: object, value: object, defaults: frozenset[bytes], encode: Any
) -> tuple[int, Any]:
    """Check one response field; return what it means and ``encode(name, value)``.

    Transfer-Encoding and Connection are the server's (RFC 9112 6.1, RFC 9113 8.2.2): the
    writer frames the body and decides the connection's fate, so their encoding is None.
    """
    validate_header(name, value)
    assert isinstance(name, bytes) and isinstance(value, bytes)
    lower = name.lower()
    if lower == b"content-length":
        if not value.isdigit():
            raise AppContractError(f"the app sent an invalid Content-Length {value!r}")
        return CONTENT_LENGTH, None
    if lower == b"transfer-encoding":
        return TRANSFER_ENCODING, None
    if lower == b"connection":
        return CONNECTION, None
    if lower == b"date":
        return DATE, encode(name, value)
    if lower in defaults:
        return DEFAULT, encode(name, value)
    return PLAIN, encode(name, value)


class DateHeader:
    """The ``date`` field value, computed at most once a second (RFC 9110 6.6.1)."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def value(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


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


async def file_blocks(fd: int, offset: int, count: int) -> AsyncIterator[bytes | memoryview]:
    """``count`` bytes of a file in blocks, for writers that cannot use ``loop.sendfile``.

    A block already in the page cache is read on the loop (RWF_NOWAIT never waits for the
    disk); any other block is read in a thread, so a cold disk never stalls the loop.  Stops
    early at the end of the file.
    """
    loop = asyncio.get_running_loop()
    left = count
    while left > 0:
        size = min(left, _SENDFILE_BLOCK)
        block: bytes | memoryview | None = _read_cached(fd, size, offset)
        if block is None:
            block = await loop.run_in_executor(None, os.pread, fd, size, offset)
        if not block:
            return
        left -= len(block)
        offset += len(block)
        yield block
