"""Access records and their formats: dualcorn's own line, or a gunicorn ``--access-log-format``.

Theory of operation
-------------------
When a response ends the server logs one :class:`AccessEntry` (``logger.info("%s", entry)``):
the request's scope, the status, the body bytes sent, the duration and the app's response
headers, plus the format to render them with.  Nothing is formatted then: a handler that prints
the record calls ``str(entry)``, and the JSON formatter (:mod:`dualcorn.json_logs`) reads the
entry's fields instead.  A record that no handler prints costs one small object.

:func:`compile_format` reads a gunicorn format string once, finds the atoms it uses
(``%(h)s``, ``%({user-agent}i)s``...) and keeps one function per atom, so a request computes
only those.  Each atom prints what gunicorn 23's ``glogging.Logger.atoms`` prints for the same
request, so a format from a ``gunicorn.conf.py`` gives the same line (see README, "Log formats").
An atom gunicorn does not know prints ``-``, as in gunicorn.  Text from the request is escaped
(``"`` as ``\\"``, as gunicorn does, and control characters, which gunicorn leaves raw, as
``\\xNN``) so a crafted path cannot forge a log line or drive a terminal.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from dualcorn.errors import ConfigError

__all__ = [
    "HTTP",
    "REFUSAL",
    "REQUEST_ID_KEY",
    "WEBSOCKET",
    "AccessEntry",
    "AccessFormat",
    "client_address",
    "compile_format",
    "printable",
    "protocol_text",
    "request_extra",
]

HTTP, WEBSOCKET, REFUSAL = "http", "websocket", "refusal"
# The key of the request id in the environ of a WSGI app (PEP 3333: server-specific keys are
# prefixed with the server's name) and in the ASGI scope's "extensions".
REQUEST_ID_KEY = "dualcorn.request_id"
# Which --mount or --static answered (dualcorn.routing sets it in the server's scope).
MOUNT_KEY = "dualcorn.mount"

# Control characters (C0, DEL, C1) in a logged path could drive the reader's terminal; escape
# them the way repr() would, keep everything else readable.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES[ord("\\")] = "\\\\"
_ESCAPES[ord('"')] = '\\"'


def printable(text: str) -> str:
    """``text`` with every character that could inject terminal sequences escaped."""
    # Nearly every path is printable already: three scans in C instead of a per-character
    # translate (1.8 us to 0.14 us for a 45-character target).  isprintable() is False for
    # every character _ESCAPES maps except the two checked after it.
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return text.translate(_ESCAPES)


def client_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def request_extra(scope: dict[str, Any]) -> dict[str, str] | None:
    """``extra=`` for an error logged about a request: its id, when it has one (JSON shows it)."""
    extensions = scope.get("extensions")
    if extensions and REQUEST_ID_KEY in extensions:
        return {"request_id": extensions[REQUEST_ID_KEY]["id"]}
    return None


class AccessEntry:
    """One response, as the access log sees it; ``str()`` renders it in the chosen format."""

    __slots__ = ("close_code", "duration", "format", "kind", "response_headers", "scope",
                 "sent", "status")  # fmt: skip

    def __init__(
        self,
        fmt: AccessFormat,
        scope: dict[str, Any],
        status: int,
        sent: int,
        duration: float,
        *,
        kind: str = HTTP,
        response_headers: Any = (),
        close_code: int | None = None,
    ) -> None:
        self.format = fmt
        self.scope = scope
        self.status = status
        self.sent = sent
        self.duration = duration  # seconds
        self.kind = kind
        self.response_headers = response_headers
        self.close_code = close_code

    def __str__(self) -> str:
        return self.format.render(self)

    # --- Fields, for the JSON formatter and the atoms ------------------------------------

    @property
    def method(self) -> str:
        method: str = self.scope.get("method", "GET")  # a WebSocket scope has none: it was a GET
        return method

    @property
    def target(self) -> str:
        scope = self.scope
        target: str = scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        return target

    @property
    def request_id(self) -> str | None:
        extension = (self.scope.get("extensions") or {}).get(REQUEST_ID_KEY)
        return extension["id"] if extension else None

    def request_header(self, name: bytes) -> str | None:
        found = None
        for key, value in self.scope.get("headers", ()):
            if key.lower() == name:
                found = value  # the last one, as gunicorn's dict of headers keeps
        return None if found is None else found.decode("latin-1")

    def response_header(self, name: bytes) -> str | None:
        found = None
        for key, value in self.response_headers:
            if bytes(key).lower() == name:
                found = value
        return None if found is None else bytes(found).decode("latin-1")


# The request line's protocol: ASGI says "2" where the log says "HTTP/2.0" (nginx, gunicorn
# and Apache write HTTP/2.0).  A version nothing here maps passed a parser's grammar.
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "2": "HTTP/2.0"}


def protocol_text(scope: dict[str, Any]) -> str:
    """``HTTP/1.1``, ``HTTP/1.0`` or ``HTTP/2.0``: the protocol every access line names."""
    version = scope.get("http_version", "1.1")
    return _PROTOCOLS.get(version) or "HTTP/" + printable(version)


class AccessFormat:
    """dualcorn's own access line: ``client - "GET /path HTTP/1.1" 200 12 0.3ms``."""

    uses_request_id = False

    def render(self, entry: AccessEntry) -> str:
        # Once per response when the access log is on: fields read straight from the scope.
        scope = entry.scope
        ms = "%.1f" % (entry.duration * 1000.0)  # a third cheaper than an f-string format
        client = client_address(scope)
        raw, query = scope["raw_path"], scope.get("query_string")
        target = printable((raw + b"?" + query if query else raw).decode("latin-1"))
        if entry.kind == WEBSOCKET:
            if entry.status == 101:
                code = entry.close_code or 0
                line = f'{client} - "WebSocket {target}" 101 close {code} {ms}ms'
            else:
                line = f'{client} - "WebSocket {target}" {entry.status} {ms}ms'
        else:
            # The method and version passed the parser's grammar (a refusal escapes its own).
            line = (
                f'{client} - "{scope.get("method", "GET")} {target} {protocol_text(scope)}" '
                f"{entry.status} {entry.sent} {ms}ms"
            )
        mount = scope.get(MOUNT_KEY)
        if mount is not None:  # --mount/--static: which app or directory answered
            line += f" mount={printable(mount)}"
        return line


Atom = Callable[[AccessEntry], Any]
_KEY = re.compile(r"%\(([^)]*)\)")


class GunicornFormat(AccessFormat):
    """A gunicorn ``access_log_format``: only the atoms it names are computed."""

    def __init__(self, text: str) -> None:
        self.text = text
        keys = dict.fromkeys(_KEY.findall(text))
        self.atoms: tuple[tuple[str, Atom], ...] = tuple((key, _atom(key)) for key in keys)
        self.uses_request_id = any(
            key.lower() in ("{dualcorn.request_id}e", "{x-request-id}i") for key in keys
        )

    def render(self, entry: AccessEntry) -> str:
        line: str = self.text % {key: atom(entry) for key, atom in self.atoms}
        return line


def compile_format(text: str | None) -> AccessFormat:
    """The format for ``--access-log-format`` (None: dualcorn's own line); ConfigError if bad."""
    if text is None:
        return AccessFormat()
    fmt = GunicornFormat(text)
    sample = AccessEntry(fmt, _SAMPLE_SCOPE, 200, 2, 0.001)
    try:
        fmt.render(sample)  # once, here: a malformed format fails at start-up, not per request
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"access_log_format {text!r} cannot be used: {exc}") from None
    return fmt


_SAMPLE_SCOPE: dict[str, Any] = {
    "type": "http", "method": "GET", "http_version": "1.1", "path": "/", "raw_path": b"/",
    "root_path": "", "query_string": b"", "headers": [], "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 80), "scheme": "http",
}  # fmt: skip


def _header_text(value: str | None) -> str:
    return "-" if value is None else printable(value)


def _user(entry: AccessEntry) -> str:
    """The user name of HTTP Basic authentication (RFC 7617), as gunicorn's ``%(u)s``."""
    auth = entry.request_header(b"authorization")
    if auth and auth.lower().startswith("basic"):
        parts = auth.split(" ", 1)
        if len(parts) == 2:
            try:
                user = base64.b64decode(parts[1].strip().encode()).split(b":", 1)[0]
                return printable(user.decode("utf-8")) or "-"
            except (binascii.Error, UnicodeDecodeError, ValueError):
                pass
    return "-"


def _path_info(entry: AccessEntry) -> str:
    """PEP 3333 ``PATH_INFO``, as gunicorn logs it: the path unquoted, bytes as latin-1."""
    scope = entry.scope
    raw: bytes = scope.get("raw_path") or scope.get("path", "").encode("utf-8")
    path = unquote_to_bytes(raw).decode("latin-1")
    root = scope.get("root_path", "").encode("utf-8").decode("latin-1")
    if root and path.startswith(root):
        path = path[len(root) :]  # PATH_INFO is below SCRIPT_NAME
    return printable(path)


class _Clock:
    """gunicorn's ``%(t)s``, local time to the second: formatted once a second, not per line."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = (-1, "")  # (second, text): one attribute, so threads see a whole pair

    def __call__(self, entry: AccessEntry) -> str:
        second = int(time.time())
        last = self.last
        if last[0] != second:
            last = self.last = (
                second,
                time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second)),
            )
        return last[1]


def _duration_parts(entry: AccessEntry) -> tuple[int, int]:
    micro = int(entry.duration * 1_000_000)
    return micro // 1_000_000, micro % 1_000_000


_ATOMS: dict[str, Atom] = {
    "h": lambda e: (e.scope.get("client") or ("-",))[0],
    "l": lambda e: "-",
    "u": _user,
    # "at logging time", as gunicorn's: a handler renders the entry as it is logged.
    "t": _Clock(),
    "r": lambda e: f"{printable(e.method)} {printable(e.target)} {protocol_text(e.scope)}",
    "s": lambda e: str(e.status),
    "m": lambda e: printable(e.method),
    "U": _path_info,
    "q": lambda e: printable(e.scope.get("query_string", b"").decode("latin-1")),
    "H": lambda e: protocol_text(e.scope),
    "b": lambda e: str(e.sent),
    "B": lambda e: e.sent,
    "f": lambda e: _header_text(e.request_header(b"referer")),
    "a": lambda e: _header_text(e.request_header(b"user-agent")),
    "T": lambda e: _duration_parts(e)[0],
    "D": lambda e: int(e.duration * 1_000_000),
    "M": lambda e: int(e.duration * 1_000_000) // 1000,
    "L": lambda e: "{}.{:06d}".format(*_duration_parts(e)),
    "p": lambda e: f"<{os.getpid()}>",
}  # fmt: skip


def _atom(key: str) -> Atom:
    if key in _ATOMS:
        return _ATOMS[key]
    lowered = key.lower()
    if lowered.startswith("{") and lowered.endswith("}i"):
        name = lowered[1:-2].encode("latin-1", "replace")
        return lambda e: _header_text(e.request_header(name))
    if lowered.startswith("{") and lowered.endswith("}o"):
        name = lowered[1:-2].encode("latin-1", "replace")
        return lambda e: _header_text(e.response_header(name))
    if lowered.startswith("{") and lowered.endswith("}e"):
        variable = lowered[1:-2]
        return lambda e: _environ_value(e, variable)
    return lambda e: "-"  # gunicorn's SafeAtoms: an unknown atom prints "-"


def _environ_value(entry: AccessEntry, variable: str) -> str:
    """``%({NAME}e)s``: the PEP 3333 environ variable a WSGI app would see for this request."""
    scope = entry.scope
    client, server = scope.get("client"), scope.get("server")
    if variable.startswith("http_"):
        return _header_text(entry.request_header(variable[5:].replace("_", "-").encode()))
    values: dict[str, Callable[[], Any]] = {
        "request_method": lambda: entry.method,
        "path_info": lambda: _path_info(entry),
        "script_name": lambda: scope.get("root_path", ""),
        "query_string": lambda: scope.get("query_string", b"").decode("latin-1"),
        "raw_uri": lambda: entry.target,
        "server_protocol": lambda: protocol_text(scope),
        "remote_addr": lambda: client[0] if client else None,
        "remote_port": lambda: client[1] if client else None,
        "server_name": lambda: server[0] if server else None,
        "server_port": lambda: server[1] if server else None,
        "content_type": lambda: entry.request_header(b"content-type"),
        "content_length": lambda: entry.request_header(b"content-length"),
        "wsgi.url_scheme": lambda: scope.get("scheme"),
        REQUEST_ID_KEY: lambda: entry.request_id,
        MOUNT_KEY: lambda: scope.get(MOUNT_KEY),
    }
    get = values.get(variable)
    value = get() if get is not None else None
    return "-" if value is None else printable(str(value))
