"""The access log line, written when a response ends (not when it starts, as uvicorn does).

Theory of operation: every response is one :class:`~dualcorn.access_format.AccessEntry`,
given to :class:`AccessLogger` (the server's ``dualcorn.access`` logger).  Through
:mod:`logging` a line costs a LogRecord (the caller's frame looked up, the time, the thread and
process names read), a formatter pass and a flushed write: about 15 us of CPU, as much as
serving the request itself.  So when the logger is exactly as dualcorn set it up (its own one
handler, a plain stream or file, its own text formatter, no filters, no propagation, the
default LogRecord factory), the line is formatted here, as that formatter would print it, and
written to the handler's stream under the handler's lock, together with the other lines of
the same event-loop iteration: one write and one flush at the end of the iteration (a
``call_soon``) however many responses ended in it, so no line waits longer than the
iteration that produced it.  A record that dualcorn's other handlers print meanwhile (an
error logged after a response ended, in the same iteration) first writes the lines waiting
(:class:`AccessLinesFirst`), so the log reads in the order things happened.  Anything else
(``--log-config``, ``--log-format json``, a filter or handler an app or test added, caplog)
takes the :mod:`logging` path, so every configuration sees the same records as before.
"""

from __future__ import annotations

import http
import logging
import time
from asyncio import _get_running_loop as _running_loop
from typing import TYPE_CHECKING, Any

from dualcorn.access_format import (
    REFUSAL,
    AccessEntry,
    AccessFormat,
    client_address,
    printable,
)

if TYPE_CHECKING:
    from dualcorn.protocols.cycle import RequestCycle

__all__ = [
    "AccessLinesFirst",
    "AccessLogger",
    "access_line",
    "client_address",
    "flush_access_lines",
    "printable",
    "refusal_line",
]

_INFO = logging.INFO
# logging.Formatter's own format for the bare gunicorn-style line (see dualcorn.logs).
_BARE = "%(message)s"
# The AccessLoggers holding lines of the current event-loop iteration (at most one per loop).
_WAITING: list[AccessLogger] = []


def flush_access_lines() -> None:
    """Write now the access lines that this thread's event loop holds for its iteration's end.

    Lines held by another thread's loop stay: that loop writes them, and their order against
    this thread's records was never fixed.
    """
    loop = _running_loop()
    if loop is None:
        return
    for logger in [logger for logger in _WAITING if logger._loop is loop]:
        logger._flush()


class AccessLinesFirst(logging.Filter):
    """On dualcorn's other handlers: access lines still held are written before a record.

    Without it, an error logged after a response ended (an app that fails once it has
    answered, a warning from the next request of the same iteration) would print before the
    response's own access line when both logs share a stream (stderr, by default).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _WAITING:
            flush_access_lines()
        return True


class AccessLogger:
    """``dualcorn.access``, with a direct path for the handler dualcorn installs itself."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        # state.access_log asks once per response: the logger's own (cached) answer, no hop.
        self.isEnabledFor = logger.isEnabledFor
        # The handler and formatter the direct path was checked for, and the line's prefix.
        self._handler: logging.Handler | None = None
        self._formatter: logging.Formatter | None = None
        self._prefix = ""
        # Lines of the current event-loop iteration, written together at its end (one write
        # and one flush for all the responses that ended in it), and the handler they go to.
        self._pending: list[str] = []
        self._pending_handler: Any = None
        self._loop: Any = None  # the loop whose iteration the pending lines belong to

    def info(self, msg: str, *args: Any) -> None:
        if len(args) == 1 and type(args[0]) is AccessEntry and msg == "%s":
            handler = self._direct()
            if handler is not None and self._write(handler, args[0]):
                return
        # stacklevel: the record names the caller (the cycle), not this wrapper.
        self.logger.info(msg, *args, stacklevel=2)

    def _direct(self) -> Any:
        """dualcorn's own handler when the direct path prints what logging would, else None."""
        logger = self.logger
        handlers = logger.handlers
        if len(handlers) != 1 or logger.filters or logger.propagate or logger.disabled:
            return None
        handler = handlers[0]
        formatter = handler.formatter
        if handler is not self._handler or formatter is not self._formatter:
            self._handler = self._formatter = None
            prefix = _prefix(handler, formatter)
            if prefix is None:
                return None
            self._handler, self._formatter, self._prefix = handler, formatter, prefix
        if handler.filters or handler.level > _INFO:
            return None
        if logging.getLogRecordFactory() is not logging.LogRecord:
            return None
        return handler

    def _write(self, handler: Any, entry: AccessEntry) -> bool:
        """Queue the line for the end of this loop iteration (written at once off a loop).

        False if the handler has no stream open: logging's own path reopens it.
        """
        if handler.stream is None:
            return False
        line = self._prefix + str(entry) + handler.terminator
        loop = _running_loop()
        if loop is None:
            self._emit(handler, line)
            return True
        pending = self._pending
        if pending and handler is not self._pending_handler:
            self._flush()  # the set-up changed within the iteration: keep the order
        if not pending:
            self._pending_handler = handler
            self._loop = loop
            _WAITING.append(self)
            loop.call_soon(self._flush)
        pending.append(line)
        return True

    def _flush(self) -> None:
        """Write the iteration's lines: one write and one flush, as many lines as responses."""
        pending = self._pending
        if pending:
            text = "".join(pending)
            pending.clear()
            if self in _WAITING:
                _WAITING.remove(self)
            self._emit(self._pending_handler, text)

    def _emit(self, handler: Any, text: str) -> None:
        with handler.lock:  # Handler.acquire() without its two Python calls
            stream = handler.stream  # read under the lock: a reopen swaps it (SIGUSR1)
            try:
                if stream is None:  # closed meanwhile: reopened, as FileHandler.emit does
                    stream = handler.stream = handler._open()
                stream.write(text)
                stream.flush()
            except Exception:
                # What StreamHandler.emit does on a broken stream: logging.raiseExceptions says.
                record = logging.LogRecord(self.logger.name, _INFO, "", 0, text, None, None)
                handler.handleError(record)


def _prefix(handler: logging.Handler, formatter: logging.Formatter | None) -> str | None:
    """What dualcorn's formatter prints before the message, or None if not one of dualcorn's."""
    from dualcorn.logs import ColourFormatter

    if not getattr(handler, "_dualcorn", False) or type(handler) not in (
        logging.StreamHandler,
        logging.FileHandler,
    ):
        return None
    if type(formatter) is logging.Formatter and formatter._fmt == _BARE:
        return ""
    if type(formatter) is ColourFormatter and formatter._fmt == "%(levelprefix)s %(message)s":
        # The prefix depends only on the level, colours and the pid: format one record.
        record = logging.LogRecord("dualcorn.access", _INFO, "", 0, "", None, None)
        record.message = ""
        return formatter.formatMessage(record)
    return None


def access_line(cycle: RequestCycle) -> tuple[Any, ...]:
    """Arguments for ``logger.info``: the entry renders itself only if a handler prints it."""
    return (
        "%s",
        AccessEntry(
            cycle.state.access_format,
            cycle.scope,
            cycle.status,
            cycle.bytes_sent,
            time.monotonic() - cycle.start_time,
            response_headers=cycle.response_headers,
        ),
    )


def refusal_line(
    client: tuple[str, int] | None,
    method: bytes,
    target: bytes,
    version: bytes,
    status: int,
    fmt: Any = None,
) -> tuple[Any, ...]:
    """The access line for a response the server gave in the app's place (503, 501...).

    The body is the reason phrase (see ``wire.error_response``); no app ran, so no time.
    """
    path, _, query = target.partition(b"?")
    scope: dict[str, Any] = {
        "method": printable(method.decode("latin-1")),
        "raw_path": path,
        "path": path.decode("latin-1"),
        "query_string": query,
        "http_version": printable(version.decode("latin-1")),
        "client": client,
        "headers": [],
    }
    entry = AccessEntry(
        fmt or AccessFormat(), scope, status, len(http.HTTPStatus(status).phrase), 0.0, kind=REFUSAL
    )
    return ("%s", entry)
