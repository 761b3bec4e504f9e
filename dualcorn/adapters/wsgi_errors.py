"""``wsgi.errors`` (PEP 3333 "Input and Error Streams"): lines an app writes become records
on the server's error logger."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterable

__all__ = ["ErrorStream"]

# Bytes of a partial line wsgi.errors holds before it logs them anyway.
_ERRORS_LINE_LIMIT = 8192


class ErrorStream(io.TextIOBase):
    """``wsgi.errors``: a text stream whose lines become records on a logger.

    PEP 3333 "Input and Error Streams": the error stream offers ``write(str)``, ``writelines``
    and ``flush``.  Lines go to the ``dualcorn.error`` logger rather than stdout, so they land
    wherever the server's logging is configured.  A partial line is kept per thread (app threads
    share this stream), and logged on ``flush()`` or when its line ends.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger = logger
        self._pending = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors.write() takes str, not {type(text).__name__}")
        pending: str = self._pending.__dict__.get("text", "") + text
        end = pending.rfind("\n")
        if end >= 0:
            self._logger.error("%s", pending[:end])
            pending = pending[end + 1 :]
        if len(pending) > _ERRORS_LINE_LIMIT:
            self._logger.error("%s", pending)
            pending = ""
        self._pending.text = pending
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:  # type: ignore[override]
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        # Called after every request: the thread's own dict, because a missing attribute on a
        # threading.local costs an exception (getattr with a default: ~0.8 us).
        pending: str = self._pending.__dict__.get("text", "")
        if pending:
            self._pending.text = ""
            self._logger.error("%s", pending)
