"""HTTP/2 (RFC 9113): h2c with prior knowledge, h2 over TLS (ALPN), on the ``h2`` library.

The way in: on plain TCP, a connection whose first bytes are the HTTP/2 connection preface
(``PRI * HTTP/2.0``, RFC 9113 3.3) is handed by the HTTP/1.1 message loop to
:class:`~dualcorn.protocols.http2.connection.H2Connection` with the bytes read so far
(:func:`prior_knowledge`); on TLS, ALPN ``h2`` picks it at the handshake (:mod:`dualcorn.tls`).
``--no-http2`` turns both off; without the ``h2`` package (the ``standard`` extra installs it)
HTTP/2 is off and the preface is answered 505 as before.

Modules: ``engine`` (the frame layer: the only module that imports ``h2``), ``limits`` (the
limits and flood defences), ``request`` (pseudo-headers to the shared policy), ``stream`` (one
stream's response writer and body owner), ``connection`` (streams, timeouts, GOAWAY),
``websocket`` and ``ws_stream`` (WebSockets over HTTP/2, RFC 8441).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Any

from dualcorn.protocols.state import ServerState

__all__ = ["PREFACE", "available", "enabled", "prior_knowledge"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@cache
def available() -> bool:
    """Whether the HTTP/2 library is installed."""
    return importlib.util.find_spec("h2") is not None


def enabled(state: ServerState) -> bool:
    """Whether this server speaks HTTP/2 (``--http2``, the default, and ``h2`` installed)."""
    return state.config.http2 and available()


def prior_knowledge(connection: Any, data: bytes) -> bool:
    """Hand an HTTP/1.1 connection that began with the preface to HTTP/2 (RFC 9113 3.3).

    ``connection`` is the :class:`~dualcorn.protocols.http1.connection.HTTPConnection` that read
    ``data`` (the preface onwards); False if HTTP/2 is off, and it answers as HTTP/1.1.
    """
    state = connection.state
    if not enabled(state) or connection.requests_served:
        return False
    from dualcorn.protocols.http2.connection import H2Connection

    h2 = H2Connection(state)
    # The addresses and the proxy trust were settled when the connection was accepted.
    h2.proxied = (connection.client, connection.server)
    h2.scheme = connection.scheme
    h2.extensions = {**h2.extensions, **connection.extensions}
    transport = connection.transport
    state.connections.discard(connection)
    transport.set_protocol(h2)
    h2.connection_made(transport)
    if data:
        h2.data_received(data)
    return True
