"""One accepted connection on a TLS listener, from its first byte until the handshake is done.

Theory of operation.  The listener accepts plain TCP, and this protocol upgrades each connection
with ``loop.start_tls`` (asyncio's and uvloop's own TLS layer, the one ``create_server(ssl=...)``
uses) rather than handing the listener an SSL context, because the server then sees every
connection from its first byte:

* the handshake is bounded by ``--timeout-request-head``, counted from the accept, and the
  first request head then gets only what is left of it, so a client that stalls in the
  handshake is closed exactly like one that stalls in its request head (nginx's
  ``client_header_timeout`` covers its TLS handshake too);
* a failed handshake (plain HTTP sent to the TLS port, TLS 1.1, an untrusted client
  certificate, a reset, the timeout) is one debug line with the peer's address, never a
  traceback: asyncio and uvloop report these ``OSError`` subclasses only in debug mode, and
  with ``create_server(ssl=...)`` the server would not hear of them at all;
* a graceful shutdown sees connections still in their handshake and lets them finish, so a
  rolling restart does not reset a client that connected a moment before;
* a preamble that comes before the handshake (the PROXY protocol, read by
  :mod:`dualcorn.proxy_protocol`, which then hands the socket to this protocol) has a place
  to be read; its addresses pass on to the HTTP connection.

Once the handshake is done, the HTTP connection class (h11 or httptools) takes the transport,
told its scheme (``https``/``wss``) and the ASGI ``tls`` extension once per connection, so the
per-request path is the same as on plain TCP.  The plain-TCP listener never comes here.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, cast

from dualcorn.protocols.state import Connection, ServerState
from dualcorn.tls.context import ServerTLS

__all__ = ["TLSHandshake", "tls_extension"]

# The ssl module names subject attributes in long form; RFC 4514 3 lists the short names an
# LDAP string representation uses.  Attributes outside this table keep the ssl module's name.
_RFC4514_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


class TLSHandshake(asyncio.Protocol, Connection):
    """The protocol of a TLS connection until its handshake completes; see the module notes."""

    transport: asyncio.Transport

    def __init__(self, state: ServerState, connection_class: Any, tls: ServerTLS) -> None:
        self.state = state
        self.connection_class = connection_class
        self.tls = tls
        self.peer: Any = None
        # Set by a PROXY protocol preamble (dualcorn.proxy_protocol) before connection_made;
        # passed on to the HTTP connection.
        self.proxied: Any = None
        self.accepted_at = 0.0
        self.task: asyncio.Task[None] | None = None
        # Decrypted bytes (and an end of file) that the TLS layer delivers between the end of
        # the handshake and the hand-over; bounded by one read of the socket.
        self._early: list[bytes] = []
        self._early_eof = False
        self._lost = False
        # Encrypted bytes read before start_tls took the transport over (uvloop only: it starts
        # reading after connection_made returns, so pause_reading there has no effect).
        self._raw: list[bytes] = []
        self._tls_started = False

    # --- On the accepted socket ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        if self.proxied is not None and self.proxied[0] is not None:
            self.peer = self.proxied[0]  # the client the load balancer speaks for
        if self.state.stopping:  # accepted just before the listener closed
            transport.close()
            return
        if self.state.at_connection_limit():
            transport.abort()  # --limit-connections counts handshakes too
            return
        # start_tls reads from here on; nothing may reach this protocol in plain text first.
        transport.pause_reading()
        loop = asyncio.get_running_loop()
        self.accepted_at = loop.time()
        self.state.connections.add(self)
        self.task = loop.create_task(self._handshake())

    async def _handshake(self) -> None:
        state = self.state
        config = state.config
        loop = asyncio.get_running_loop()
        if self._lost or self.transport.is_closing():
            # Gone before the task ran (a client that connects and closes): start_tls would
            # wait out the whole handshake timeout on a dead socket.
            state.connections.discard(self)
            return
        if self._raw:
            # Runs before the TLS layer's connection_made and resume_reading, which start_tls
            # schedules below: the bytes reach it first and in order.
            loop.call_soon(self._replay_raw)
        self._tls_started = True
        try:
            tls_transport = await loop.start_tls(
                self.transport,
                self,
                self.tls.context,
                server_side=True,
                ssl_handshake_timeout=config.timeout_request_head,
            )
        except OSError as exc:  # ssl.SSLError, resets, and the timeout's ConnectionAbortedError
            state.error_logger.debug("TLS handshake with %s failed: %s", _peer(self.peer),
                                     _describe_failure(exc))  # fmt: skip
            self.transport.close()
            return
        finally:
            state.connections.discard(self)
        if tls_transport is None or self._lost or tls_transport.is_closing():
            return  # the peer went away as the handshake ended
        connection = self._hand_over(tls_transport)
        # The handshake took part of the head timeout: the first request gets the rest.
        connection.count_handshake(self.accepted_at)
        for data in self._early:
            connection.data_received(data)
        self._early.clear()
        if self._early_eof:
            connection.eof_received()
        if state.stopping:
            # shutdown() put this task among those the server waits for: the request that
            # may come on this new connection is answered before the process exits.
            await connection.wait_closed()

    def _hand_over(self, tls_transport: asyncio.Transport) -> Any:
        ssl_object = tls_transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            # RFC 9113 3.2: the client chose HTTP/2 in the handshake; it sends the preface.
            from dualcorn.protocols.http2.connection import H2Connection

            connection: Any = H2Connection(self.state)
        else:
            connection = self.connection_class(self.state)
        connection.proxied = self.proxied
        extension = tls_extension(ssl_object, self.tls)
        connection.scheme = "https"
        connection.ws_scheme = "wss"
        connection.extensions = {**connection.extensions, "tls": extension}
        connection.ws_extensions = {**connection.ws_extensions, "tls": extension}
        tls_transport.set_protocol(connection)
        connection.connection_made(tls_transport)
        return connection

    def _replay_raw(self) -> None:
        """Give the TLS layer (a BufferedProtocol in asyncio and uvloop) the bytes read early."""
        protocol: Any = self.transport.get_protocol()
        if self.transport.is_closing() or protocol is self:
            return
        for data in self._raw:
            if not hasattr(protocol, "get_buffer"):
                protocol.data_received(data)
                continue
            view = memoryview(data)
            while view:
                buffer = protocol.get_buffer(len(view))
                size = min(len(buffer), len(view))
                buffer[:size] = view[:size]
                protocol.buffer_updated(size)
                view = view[size:]
        self._raw.clear()

    # --- As the TLS layer's application protocol, until the hand-over --------------------

    def data_received(self, data: bytes) -> None:
        if not self._tls_started:  # on the raw socket, before start_tls (see _replay_raw)
            self._raw.append(data)
            self.transport.pause_reading()
            return
        self._early.append(data)

    def eof_received(self) -> bool | None:
        if not self._tls_started:
            return None  # a TLS client never half-closes before its handshake: close
        self._early_eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.state.connections.discard(self)

    # --- Called by the server ------------------------------------------------------------

    def shutdown(self) -> None:
        # A client mid-handshake connected a moment ago and has sent no request yet; let it
        # finish (bounded by the handshake timeout) so its request is served, not reset.
        task = self.task
        if task is not None and not task.done():
            self.state.tasks.add(task)
            task.add_done_callback(self.state.tasks.discard)


def tls_extension(ssl_object: ssl.SSLObject | None, tls: ServerTLS) -> dict[str, Any]:
    """The ASGI TLS extension (asgiref specs/tls.rst, version 0.2) for one connection."""
    if ssl_object is None:
        return {"server_cert": tls.server_cert, "client_cert_chain": [], "client_cert_name": None,
                "client_cert_error": None, "tls_version": None, "cipher_suite": None}  # fmt: skip
    chain: list[str] = []
    leaf = ssl_object.getpeercert(binary_form=True)
    if leaf:
        # Python 3.13 also gives what else the client sent; on the server side OpenSSL leaves
        # the client's own certificate out of that list, so it goes first from getpeercert.
        unverified = getattr(ssl_object, "get_unverified_chain", None)
        others = [_der(c) for c in unverified() or ()] if unverified is not None else []
        chain = [ssl.DER_cert_to_PEM_cert(d) for d in [leaf, *(d for d in others if d != leaf)]]
    name = None
    if chain:
        peer = ssl_object.getpeercert()
        name = _rfc4514(peer.get("subject", ())) if peer else None
    cipher = ssl_object.cipher()
    return {
        "server_cert": tls.server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        # OpenSSL ends the handshake when a presented certificate fails verification (with
        # --ssl-cert-reqs 1 as with 2), so a connection that got this far has no such error.
        "client_cert_error": None,
        "tls_version": tls.wire_version(ssl_object.version()),
        "cipher_suite": tls.cipher_ids.get(cipher[0]) if cipher else None,
    }


def _der(cert: Any) -> bytes:
    if isinstance(cert, bytes):
        return cert
    # An _ssl.Certificate (Python 3.13's internals); ENCODING_DER is 2 in _ssl.
    return bytes(cert.public_bytes(2))


def _rfc4514(subject: Any) -> str:
    """RFC 4514 2.1: the relative distinguished names in reverse order, joined by commas."""
    parts = []
    for rdn in reversed(subject):
        parts.append("+".join(f"{_RFC4514_NAMES.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(parts)


def _escape(value: str) -> str:
    # RFC 4514 2.4: escape the special characters, a leading '#' or space, a trailing space.
    escaped = "".join("\\" + c if c in '"+,;<>\\' else "\\00" if c == "\0" else c for c in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "a Unix socket peer")


def _describe_failure(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "HTTP_REQUEST":
            return "plain HTTP was sent to the TLS port"
        return f"{exc.reason or exc}"
    if isinstance(exc, ConnectionAbortedError):
        return "it did not complete within --timeout-request-head"
    return str(exc) or type(exc).__name__
