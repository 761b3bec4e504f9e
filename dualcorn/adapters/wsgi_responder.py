"""The response side of the WSGI bridge: ``start_response``, ``write`` and the body, in one thread.

Theory of operation
-------------------
:class:`Responder` runs one request inside an app thread.  It calls the application, checks what
``start_response`` receives (PEP 3333 "The start_response() Callable"), and posts the response
messages to the request's :class:`~.wsgi_threads.Outbox`, which the loop drains into the
server's ``send()``.  Posting does not wait for the loop (the block is on its way, as PEP 3333
"Buffering and Streaming" requires, while the app produces the next one); the thread waits only
when the client falls ``--wsgi-outbuf-high-watermark`` bytes behind (past
``--wsgi-outbuf-overflow`` the outbox keeps them in a temporary file, not in memory).

Headers leave lazily, with the first non-empty chunk or at the end of the iterable (PEP 3333
"Buffering and Streaming"), together with that chunk.  A list or tuple body under
``WHOLE_BODY_LIMIT`` goes out as one message with an exact Content-Length, and so does a body
whose iterator is a list's or a tuple's (Django's ``HttpResponse``): its chunks are in memory,
so gathering them delays nothing.  Response header lines are checked once and then looked up
by their ``(name, value)`` pair.  A
``wsgi.file_wrapper`` over a regular file uses the ``http.response.zerocopysend`` extension when
the server offers it.

Whatever happens, the iterable's ``close()`` is called exactly once, in the app thread, after
the last message was posted and before the outbox is finished.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.types import WSGIApplication

from dualcorn.access_format import REQUEST_ID_KEY
from dualcorn.adapters.wsgi_input import ClientDisconnected, Message, WSGIInput
from dualcorn.adapters.wsgi_threads import Outbox
from dualcorn.errors import AppContractError

__all__ = ["WHOLE_BODY_LIMIT", "FileWrapper", "Responder"]

logger = logging.getLogger("dualcorn.error")

# A list or tuple body up to this size is joined and sent as one message, headers included.
WHOLE_BODY_LIMIT = 64 * 1024

# PEP 3333 "Other HTTP Features": applications must not use HTTP/1.1 hop-by-hop headers; this is
# the set wsgiref.util.is_hop_by_hop names (RFC 2616 13.5.1), less "Connection": many real apps
# send "Connection: close" to ask for the connection to end, and the server can honour that
# (waitress does) instead of turning a working response into a 500.
_HOP_BY_HOP = frozenset(
    ("keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
     "transfer-encoding", "upgrade")
)  # fmt: skip
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\0]")  # RFC 9110 5.5
# Header lines already checked and encoded, by their (name, value) pair, with the length a
# Content-Length line declares (bounded; a dict's get, set and clear are atomic, so the app
# threads share it without a lock).
_KNOWN_HEADERS: dict[Any, tuple[tuple[bytes, bytes], int | None]] = {}
_KNOWN_HEADERS_LIMIT = 1024
# Iterators over bodies already in memory (a Django HttpResponse iterates its list): taking
# their next chunk cannot block, so the whole body may be gathered before anything is sent.
_IN_MEMORY_ITERATORS: tuple[type, ...] = (type(iter([])), type(iter(())))


class FileWrapper:
    """``wsgi.file_wrapper`` (PEP 3333 "Optional Platform-Specific File Handling").

    Iterates the file in ``block_size`` blocks; ``close()`` closes the file.  When an application
    returns one over a regular file, the responder may send it with the OS's sendfile instead.
    """

    __slots__ = ("block_size", "filelike")

    def __init__(self, filelike: Any, block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while block := read(self.block_size):
            yield block

    def close(self) -> None:
        # PEP 3333: close() "calls the original file-like object's close() method, if present".
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


@functools.lru_cache(maxsize=128)
def _status_code(status: str) -> int:
    # PEP 3333: the status is "a Status-Code and a Reason-Phrase, in that order and separated by
    # a single space, with no surrounding whitespace or other characters".
    code = status[:3]
    if (
        len(status) < 4
        or status[3] != " "
        or not (code.isascii() and code.isdigit())
        or status != status.strip()
        or _FORBIDDEN_IN_VALUE.search(status)
    ):
        raise AppContractError(
            f"start_response() status {status!r} is not a 3-digit code, a space and a reason"
        )
    # RFC 9110 15: codes outside 100..599 are invalid; 1xx are not final responses.
    if not 200 <= int(code) <= 599:
        raise AppContractError(f"start_response() status {status!r}: code must be 200-599")
    return int(code)


@functools.lru_cache(maxsize=512)
def _header_name(name: str) -> bytes:
    if not _TOKEN.fullmatch(name):
        raise AppContractError(f"response header name {name!r} is not an HTTP token")
    lowered = name.lower()
    if lowered in _HOP_BY_HOP:
        raise AppContractError(
            f"response header {name!r} is hop-by-hop; PEP 3333 leaves those to the server"
        )
    return lowered.encode("ascii")


def _encode_header(item: Any) -> tuple[bytes, bytes]:
    """One checked WSGI header as ASGI bytes."""
    # PEP 3333: names and values are native strings (str).
    if (
        not isinstance(item, tuple | list)
        or len(item) != 2
        or not isinstance(item[0], str)
        or not isinstance(item[1], str)
    ):
        raise AppContractError(f"response header {item!r} is not a (str, str) pair")
    name, value = item
    raw_name = _header_name(name)
    if raw_name == b"content-length":
        if not (value.isascii() and value.isdigit()):
            raise AppContractError(f"Content-Length {value!r} is not a whole number")
        return raw_name, value.encode("ascii")
    # PEP 3333 "Unicode Issues": header values must be latin-1; RFC 9110 5.5 forbids CR, LF
    # and NUL in them (they would split the response).
    if _FORBIDDEN_IN_VALUE.search(value):
        raise AppContractError(f"response header {name!r} contains CR, LF or NUL")
    try:
        return raw_name, value.encode("latin-1")
    except UnicodeEncodeError:
        raise AppContractError(
            f"response header {name!r} has characters outside latin-1; encode the value"
        ) from None


def _encode_headers(headers: Any) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """ASGI headers from WSGI ones, and the declared Content-Length."""
    # PEP 3333: "response_headers argument is a list of (header_name, header_value) tuples".
    if not isinstance(headers, list | tuple):
        raise AppContractError(f"response headers must be a list, not {type(headers).__name__}")
    encoded: list[tuple[bytes, bytes]] = []
    content_length = None
    known = _KNOWN_HEADERS
    for item in headers:
        # Most responses repeat the same few header lines: those checked once are looked up
        # (a pair of str; a list is unhashable and takes the long way).
        cacheable = type(item) is tuple
        try:
            entry = known.get(item) if cacheable else None
        except TypeError:  # a tuple holding something unhashable: the check says what
            entry = None
        if entry is None:
            pair = _encode_header(item)
            length = int(pair[1]) if pair[0] == b"content-length" else None
            if cacheable and type(item[0]) is type(item[1]) is str:
                if len(known) >= _KNOWN_HEADERS_LIMIT:
                    known.clear()  # many distinct lines (lengths, cookies): start again
                known[item] = entry = (pair, length)
        else:
            pair, length = entry
        if length is not None:
            content_length = length
        encoded.append(pair)
    return encoded, content_length


def _regular_file_span(filelike: Any) -> tuple[int, int] | None:
    """(offset, bytes to its end) when ``filelike`` is a binary regular file sendfile can read."""
    if isinstance(filelike, io.TextIOBase):
        return None
    try:
        status = os.fstat(filelike.fileno())
        offset: int = filelike.tell()
    except (AttributeError, OSError, ValueError):  # no fileno, a closed or wrapped stream
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return offset, max(0, status.st_size - offset)


class Responder:
    """Runs one request through a WSGI application (inside an app thread)."""

    __slots__ = (
        "_app", "_content_length", "_environ", "_finished", "_headers", "_headers_sent",
        "_input", "_last", "_outbox", "_sent", "_status", "_zerocopy",
    )  # fmt: skip

    def __init__(
        self,
        app: WSGIApplication,
        environ: dict[str, Any],
        outbox: Outbox,
        wsgi_input: WSGIInput,
        *,
        zerocopy: bool,
    ) -> None:
        self._app = app
        self._environ = environ
        self._outbox = outbox
        self._last: list[Message] | None = None  # a whole response, handed over by finish()
        self._input = wsgi_input
        self._zerocopy = zerocopy
        self._status: int | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._content_length: int | None = None
        self._headers_sent = False
        self._finished = False
        self._sent = 0

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None, /
    ) -> Any:
        """PEP 3333's ``start_response``: records the status and headers, returns ``write``."""
        if exc_info is not None:
            try:
                # PEP 3333: "if exc_info is provided, and the HTTP headers have already been
                # sent, start_response must raise an error, and should re-raise using the
                # exc_info tuple".
                if self._headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # PEP 3333: avoid a reference cycle through the traceback
        elif self._status is not None:
            # PEP 3333: "it is a fatal error to call start_response without the exc_info
            # argument if start_response has already been called within the current invocation".
            raise AppContractError(
                "start_response() was called twice; a second call must pass exc_info"
            )
        if type(status) is not str:
            raise AppContractError(f"start_response() status must be a str, not {status!r}")
        code = _status_code(status)
        self._headers, self._content_length = _encode_headers(headers)
        self._status = code
        return self._write

    def _write(self, data: bytes) -> None:
        """PEP 3333's imperative ``write(data)``: sends at once, waiting for the client."""
        if not isinstance(data, bytes):
            raise AppContractError(f"write() takes bytes, not {type(data).__name__}")
        if self._finished:
            # PEP 3333: raise "if the application tries to write() past" its Content-Length.
            raise AppContractError("write() past the declared Content-Length")
        if data:
            self._send_chunk(data)

    def describe(self) -> str:
        """The request, for a log line about a thread the server gave up on."""
        environ = self._environ
        return f"{environ['REQUEST_METHOD']} {environ['SCRIPT_NAME']}{environ['PATH_INFO']}"

    def run(self) -> None:
        """Call the application and post its response; an app error after the headers is
        handed to the outbox, which re-raises it on the loop."""
        if not self._outbox.claim():
            return  # abandoned (by the server, or its client) before a thread was free
        iterable = None
        error: BaseException | None = None
        try:
            iterable = self._app(self._environ, self.start_response)
            self._send_iterable(iterable)
        except ClientDisconnected:
            logger.debug("client disconnected during %s", self._environ["PATH_INFO"])
        except BaseException as exc:
            if self._input.disconnected:
                # The application failed because the body stopped: nobody to answer.
                logger.debug("client disconnected during %s", self._environ["PATH_INFO"])
            elif self._headers_sent:
                # Too late for a 500: the server logs this and closes the connection.
                error = exc
                if not isinstance(exc, Exception):
                    error = AppContractError(f"the WSGI application raised {exc!r}")
                    error.__cause__ = exc
            else:
                request_id = self._environ.get(REQUEST_ID_KEY)
                extra = {"request_id": request_id} if request_id else None
                logger.error("Exception in WSGI application", exc_info=exc, extra=extra)
                self._send_server_error()
        finally:
            try:
                self._close(iterable)
                self._environ["wsgi.errors"].flush()
            finally:
                self._outbox.finish(error, self._last)

    def _send_iterable(self, iterable: Iterable[bytes]) -> None:
        kind = type(iterable)
        if kind is list or kind is tuple:
            chunks: Any = iterable
        elif self._zerocopy and type(iterable) is FileWrapper and self._send_file(iterable):
            return
        else:
            chunks = iter(iterable)
            if type(chunks) in _IN_MEMORY_ITERATORS:
                chunks = list(chunks)  # the body is in memory already: next() cannot block
        if type(chunks) is list or type(chunks) is tuple:
            total = 0
            for chunk in chunks:
                if not isinstance(chunk, bytes):
                    raise AppContractError(f"the response iterable yielded {chunk!r}, not bytes")
                total += len(chunk)
            if total <= WHOLE_BODY_LIMIT:
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._send_whole(body, at_finish=not hasattr(iterable, "close"))
                return
        for chunk in chunks:
            # PEP 3333: the application's iterable yields bytestrings.
            if not isinstance(chunk, bytes):
                raise AppContractError(f"the response iterable yielded {chunk!r}, not bytes")
            # PEP 3333 "Buffering and Streaming": empty chunks do not release the headers.
            if chunk:
                self._send_chunk(chunk)
                if self._finished:  # Content-Length reached: stop iterating (PEP 3333)
                    return
        if not self._finished:
            self._finished = True
            self._post_body(self._start_message(), b"", more_body=False)

    def _send_chunk(self, chunk: bytes) -> None:
        if self._content_length is not None:
            room = self._content_length - self._sent
            if len(chunk) >= room:
                # PEP 3333: "the server should not transmit more bytes to the client than the
                # header allows, and should stop iterating over the response".
                self._finished = True
                chunk = chunk[:room]
        self._sent += len(chunk)
        self._post_body(self._start_message(), chunk, more_body=not self._finished)

    def _send_whole(self, body: bytes, *, at_finish: bool) -> None:
        """The whole body as one message, with a Content-Length.  ``at_finish``: nothing runs
        before :meth:`Outbox.finish` (no ``close()``), so the response travels with it."""
        if self._content_length is not None:
            body = body[: self._content_length - self._sent]
        self._finished = True
        self._sent += len(body)
        if self._input.disconnected:
            raise ClientDisconnected("the client disconnected")
        start = self._start_message(len(body))
        message = {"type": "http.response.body", "body": body, "more_body": False}
        if at_finish:
            # The whole response is the work item's result, sent with the one wake-up of the
            # loop that ends it.
            self._last = [message] if start is None else [start, message]
        else:
            # close() may take a while (Django closes database connections): send first.
            self._outbox.post(message, len(body), start=start)

    def _send_file(self, wrapper: FileWrapper) -> bool:
        """Send a regular file with ``http.response.zerocopysend``; False if it is not one."""
        span = _regular_file_span(wrapper.filelike)
        if span is None:
            return False
        offset, size = span
        if self._content_length is not None:
            size = max(0, self._content_length - self._sent)  # PEP 3333: not past it
        start = self._start_message(size)
        self._finished = True
        self._sent += size
        message = {
            "type": "http.response.zerocopysend",
            "file": wrapper.filelike,
            "offset": offset,
            "count": size,
            "more_body": False,
        }
        # The wrapper's close() closes the file: wait until the server has sent it.
        self._post(start, message, 0, wait_sent=True)
        return True

    def _start_message(self, body_length: int | None = None) -> Message | None:
        """``http.response.start`` if the headers are still to be sent, else None.

        ``body_length`` is the whole body's length when known: without a Content-Length from
        the application, it becomes one, sparing the client chunked framing.
        """
        if self._headers_sent:
            return None
        if self._status is None:
            raise AppContractError("the WSGI application did not call start_response()")
        headers = self._headers
        if (
            body_length is not None
            and self._content_length is None
            and self._status not in (204, 304)  # RFC 9110 8.6: no Content-Length on a 204
            and self._environ["REQUEST_METHOD"] != "HEAD"  # a HEAD body says nothing of length
        ):
            headers = [*headers, (b"content-length", b"%d" % body_length)]
        self._headers_sent = True
        return {"type": "http.response.start", "status": self._status, "headers": headers}

    def _post_body(self, start: Message | None, body: bytes, *, more_body: bool) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": more_body}
        self._post(start, message, len(body))

    def _post(
        self, start: Message | None, message: Message, size: int, *, wait_sent: bool = False
    ) -> None:
        if self._input.disconnected:
            raise ClientDisconnected("the client disconnected")
        self._outbox.post(message, size, start=start, wait_sent=wait_sent)

    def _send_server_error(self) -> None:
        self._headers_sent = True
        start = {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"0")],
        }
        with contextlib.suppress(ClientDisconnected):
            self._post_body(start, b"", more_body=False)

    def _close(self, iterable: Any) -> None:
        # PEP 3333: "If the iterable returned by the application has a close() method, the
        # server or gateway must call that method upon completion of the current request,
        # whether the request was completed normally, or terminated early".
        close = getattr(iterable, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:
            logger.exception("The WSGI response's close() raised")
