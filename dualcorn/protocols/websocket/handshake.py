"""The WebSocket opening handshake (RFC 6455 section 4) on top of an HTTP/1.1 request.

Theory of operation: an HTTP parser (h11 or httptools) reads the request head.  When it asks for
a WebSocket (:func:`is_websocket_upgrade`) and this server serves WebSockets
(:func:`websocket_support`), the connection calls ``HTTPConnection.upgrade_websocket``, which
builds a :class:`Handshake` here.  The handshake is *checked* at once (key, version, method,
extension offers), but *answered* only when the app decides (ASGI websocket spec, "Connect"):

- ``websocket.accept``: :meth:`Handshake.accept_response`, the 101 with the negotiated
  permessage-deflate parameters, the app's subprotocol and the app's headers;
- ``websocket.close`` first: :meth:`Handshake.denial`, a 403;
- the ``websocket.http.response`` extension: :class:`AppResponse`, the app's own response.

Only the bytes on the wire are written here; validation and extension negotiation are the
``websockets`` package's sans-IO ``ServerProtocol``, which also reads the frames afterwards.
Why that package and not wsproto: both pass the Autobahn conformance suite, but websockets
bounds each message, fragments and inflated permessage-deflate data included (``max_size``,
closing with 1009), where wsproto has no size limit at all, so a compressed "bomb" would inflate
without bound; and websockets unmasks in C: it reads and writes frames about three times as fast
(``benchmarks/ws_frames.py``).  So there is one implementation; ``--ws wsproto`` is served by it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dualcorn.errors import AppContractError, ConfigError
from dualcorn.protocols.http1.wire import error_response, status_line
from dualcorn.protocols.writer import validate_header

if TYPE_CHECKING:
    from websockets.extensions import Extension

    from dualcorn.config import Config
    from dualcorn.protocols.state import ServerState

__all__ = [
    "AppResponse",
    "Handshake",
    "denial_body",
    "is_websocket_upgrade",
    "websocket_support",
]

logger = logging.getLogger("dualcorn.error")

# Headers the server owns in a 101 response; an app's copy of them is dropped.
_HANDSHAKE_NAMES = frozenset(
    {b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-extensions",
     b"sec-websocket-protocol", b"content-length", b"transfer-encoding"}
)  # fmt: skip


def websocket_support(config: Config, app_takes_them: bool) -> bool:
    """Whether upgrade requests become WebSocket sessions; decided once per server.

    With ``--ws none``, or an app whose adapter takes no websocket scope (a WSGI app: PEP 3333
    has no WebSockets), an upgrade request is an ordinary HTTP request.  ``wsproto`` is
    accepted as a name for the one implementation so uvicorn command lines keep working; see
    the module docstring for why there is one.
    """
    if config.ws == "none" or not app_takes_them:
        return False
    try:
        import websockets.server  # noqa: F401
    except ImportError:
        if config.ws == "auto":
            logger.warning("No WebSocket support: pip install websockets (or dualcorn[standard])")
            return False
        raise ConfigError(
            f"ws {config.ws!r} needs the websockets package: pip install websockets"
        ) from None
    if config.ws == "wsproto":
        logger.warning(
            "--ws wsproto: dualcorn serves WebSockets with the websockets package's sans-IO "
            "protocol only; the behaviour is the same RFC 6455"
        )
    return True


def is_websocket_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    """RFC 6455 4.1 (items 5 and 6): "Upgrade: websocket" and a "Connection: Upgrade" token."""
    upgrade = connection = False
    for name, value in headers:
        if name == b"upgrade":
            upgrade = value.strip().lower() == b"websocket"
        elif name == b"connection":
            connection = connection or any(
                token.strip() == b"upgrade" for token in value.lower().split(b",")
            )
    return upgrade and connection


def subprotocols(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """RFC 6455 4.1 item 10: the client's Sec-WebSocket-Protocol offers, in order."""
    offered: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            offered.extend(
                token.strip() for token in value.decode("latin-1").split(",") if token.strip()
            )
    return offered


class Handshake:
    """One checked opening handshake, waiting for the app's answer."""

    __slots__ = ("_accept", "_extensions_header", "extensions", "rejection")

    def __init__(
        self, method: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]],
        config: Config,
    ) -> None:  # fmt: skip
        from websockets.datastructures import Headers
        from websockets.http11 import Request
        from websockets.server import ServerProtocol

        factories = None
        if config.ws_per_message_deflate:
            from websockets.extensions.permessage_deflate import (
                enable_server_permessage_deflate,
            )

            # websockets' defaults: 4 KiB windows and memLevel 5 keep each compressed socket
            # near 64 KiB of zlib state instead of 320 KiB, at a small cost in ratio.
            factories = enable_server_permessage_deflate(None)
        checker = ServerProtocol(extensions=factories)
        request = Request(
            target.decode("latin-1"),
            Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
            method.decode("ascii", "replace"),
            "HTTP/" + version.decode("ascii", "replace"),
        )
        response = checker.accept(request)
        self.extensions: list[Extension] = checker.extensions
        # RFC 6455 4.2.1: a request that is not a valid handshake gets an HTTP error (400, 405,
        # 426, 505) instead of the app; these bytes are it, or None when the request is sound.
        self.rejection: bytes | None = None
        if response.status_code != 101:
            self.rejection = response.serialize()
        self._accept = response.headers.get("Sec-WebSocket-Accept", "")
        self._extensions_header = response.headers.get("Sec-WebSocket-Extensions")

    def accept_response(self, message: dict[str, Any], state: ServerState) -> bytes:
        """The 101 for ``websocket.accept`` (RFC 6455 4.2.2 item 5)."""
        lines = [
            status_line(101),
            b"upgrade: websocket\r\nconnection: Upgrade\r\n",
            b"sec-websocket-accept: %s\r\n" % self._accept.encode("ascii"),
        ]
        if self._extensions_header:
            lines.append(b"sec-websocket-extensions: %s\r\n" % self._extensions_header.encode())
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            # ASGI: the app names its subprotocol here, never as a header.
            if not isinstance(subprotocol, str):
                raise AppContractError(f"websocket.accept 'subprotocol' must be a str, not "
                                       f"{type(subprotocol).__name__}")  # fmt: skip
            value = subprotocol.encode("latin-1")
            validate_header(b"sec-websocket-protocol", value)
            lines.append(b"sec-websocket-protocol: %s\r\n" % value)
        given = _app_headers(message.get("headers", ()), lines, _HANDSHAKE_NAMES)
        lines.append(_default_headers(state, given))
        lines.append(b"\r\n")
        return b"".join(lines)

    def denial(self, status: int) -> bytes:
        """ASGI websocket spec, "Close": closing before accepting answers 403 (or 500, 503)."""
        return error_response(status)

    def app_response(self, message: dict[str, Any], state: ServerState) -> AppResponse:
        """The ASGI ``websocket.http.response`` extension: the app's own response."""
        return AppResponse(message, state)


def denial_body(
    message: dict[str, Any], complete: bool
) -> tuple[bytes | bytearray | memoryview, bool]:
    """One ``websocket.http.response.body`` message, checked (ASGI websocket denial response
    extension): its body and whether more follows.  Shared by the HTTP/1.1 and HTTP/2 answers."""
    if complete:
        raise AppContractError("the app sent websocket.http.response.body after the end")
    body = message.get("body", b"")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise AppContractError("websocket.http.response.body 'body' must be bytes")
    return body, bool(message.get("more_body", False))


class AppResponse:
    """The ASGI ``websocket.http.response`` extension: the app answers with its own response.

    The server closes the connection after it, so a body of unknown length is delimited by
    the close (RFC 9112 6.3 item 8) and needs no chunking.
    """

    __slots__ = ("_head", "_length", "complete", "sent", "status")

    def __init__(self, message: dict[str, Any], state: ServerState) -> None:
        status = message.get("status")
        if not isinstance(status, int) or not 100 <= status <= 999 or status == 101:
            raise AppContractError(
                f"websocket.http.response.start needs an int status other than 101, not {status!r}"
            )
        lines = [status_line(status)]
        given = _app_headers(message.get("headers", ()), lines, frozenset({b"connection"}))
        lines.append(_default_headers(state, given))
        lines.append(b"connection: close\r\n")
        self._length = b"content-length" in given
        self._head = b"".join(lines)
        self.status = status
        self.sent = 0
        self.complete = False

    def body(self, message: dict[str, Any]) -> bytes:
        """The bytes for one ``websocket.http.response.body`` message."""
        body, more = denial_body(message, self.complete)
        head = self._head
        if head:
            self._head = b""
            if not self._length and not more:
                head += b"content-length: %d\r\n" % len(body)
            head += b"\r\n"
        self.sent += len(body)
        self.complete = not more
        return head + bytes(body)


def _app_headers(headers: Any, lines: list[bytes], dropped: frozenset[bytes]) -> set[bytes]:
    """Append the app's headers to ``lines``; return the lower-case names it gave."""
    given: set[bytes] = set()
    for name, value in headers:
        validate_header(name, value)
        lower = name.lower()
        given.add(lower)
        if lower not in dropped:
            lines.append(b"%s: %s\r\n" % (name, value))
    return given


def _default_headers(state: ServerState, given: set[bytes]) -> bytes:
    """The server's date, server and --header fields the app did not set itself."""
    out = b""
    if state.date is not None and b"date" not in given:
        out += b"date: %s\r\n" % state.date.value()
    if not given & state.default_names:
        return out + state.default_head
    for line in state.default_head.split(b"\r\n"):
        if line and line.split(b":", 1)[0].lower() not in given:
            out += line + b"\r\n"
    return out
