"""``--log-format json``: one JSON object per line, for Loki, Elasticsearch or CloudWatch.

Every record has ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``pid`` and
``message``; an app's exception adds the request's ``request_id``; a record with a traceback
adds ``exc_info`` (the formatted traceback, newlines
escaped inside the one JSON string, so a traceback never breaks the one-object-per-line rule)
and ``stack_info`` when asked.  An access record adds ``type`` (``http``, ``websocket`` or
``refusal``: a 503/501 the server answered in the app's place), ``client``, ``client_port``,
``method``, ``path``, ``query``, ``status``, ``bytes``, ``duration_ms``, ``protocol``,
``user_agent``, ``referer``, ``request_id``, ``mount`` (which ``--mount``/``--static``
answered, or null), and for a WebSocket its ``close_code``; its
``message`` is the text line (``--access-log-format`` applies there).

:class:`JSONFormatter` is an ordinary :class:`logging.Formatter`, so a ``--log-config`` file can
name ``dualcorn.json_logs.JSONFormatter`` for handlers of its own.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from dualcorn.access_format import MOUNT_KEY, WEBSOCKET, AccessEntry, protocol_text

__all__ = ["JSONFormatter", "access_fields"]


def rfc3339(timestamp: float) -> str:
    """``2026-11-30T19:21:46.123Z``: RFC 3339 section 5.6, UTC, milliseconds."""
    seconds = int(timestamp)
    millis = int((timestamp - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def access_fields(entry: AccessEntry) -> dict[str, Any]:
    scope = entry.scope
    client = scope.get("client")
    fields: dict[str, Any] = {
        "type": entry.kind,
        "client": client[0] if client else None,
        "client_port": client[1] if client else None,
        "method": entry.method,
        "path": scope.get("path", ""),
        "query": scope.get("query_string", b"").decode("latin-1"),
        "status": entry.status,
        "bytes": entry.sent,
        "duration_ms": round(entry.duration * 1000.0, 3),
        "protocol": protocol_text(scope),  # HTTP/2.0 as in the text line, not "HTTP/2"
        "user_agent": entry.request_header(b"user-agent"),
        "referer": entry.request_header(b"referer"),
        "request_id": entry.request_id,
        "mount": scope.get(MOUNT_KEY),  # which --mount or --static answered, if any
    }
    if entry.kind == WEBSOCKET:
        fields["close_code"] = entry.close_code
    return fields


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        args = record.args
        if isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], AccessEntry):
            data.update(access_fields(args[0]))
        request_id = getattr(record, "request_id", None)
        if request_id is not None:  # an error about one request (see access_format.request_extra)
            data["request_id"] = request_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc_info"] = record.exc_text
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        # ASCII only: U+2028 or NEL inside a value would be a line break to some readers.
        return json.dumps(data, default=str)
