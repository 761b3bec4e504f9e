"""TLS on dualcorn's own listener, with a real server and real clients on both loops and parsers.

A throw-away CA from ``trustme`` signs the server's certificate (for 127.0.0.1) and the client
certificates; clients trust only that CA, so every test also proves the certificate verifies.
The ``serve`` fixture fails a test if the event loop reported anything (a traceback).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dualcorn import Config
from dualcorn.errors import ConfigError
from dualcorn.tls import load_tls
from dualcorn.tls.handshake import _rfc4514
from tests.support import ServerThread

trustme = pytest.importorskip("trustme")


@dataclass
class PKI:
    ca: Any
    certfile: str
    keyfile: str
    ca_file: str
    leaf_pem: bytes
    client: Any  # a trustme LeafCert for "alice", signed by the same CA

    def client_context(self, *, with_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if with_cert:
            self.client.configure_cert(context)
        return context

    def options(self, **more: Any) -> dict[str, Any]:
        return {"ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile, **more}


def make_pki(directory: Path) -> PKI:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(str(directory / "key.pem"))
    server.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    client = ca.issue_cert("alice@example.com", common_name="alice")
    return PKI(ca, str(directory / "cert.pem"), str(directory / "key.pem"),
               str(directory / "ca.pem"), server.cert_chain_pems[0].bytes(), client)  # fmt: skip


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return make_pki(tmp_path)


async def echo_scope(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what the app saw of the connection."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        seen = {"scheme": scope["scheme"], "tls": scope["extensions"].get("tls"),
                "text": message.get("text")}  # fmt: skip
        await send({"type": "websocket.send", "text": json.dumps(seen)})
        await send({"type": "websocket.close"})
        return
    seen = {"scheme": scope["scheme"], "tls": scope["extensions"].get("tls")}
    body = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def same_certificate(pem_a: str | bytes, pem_b: str | bytes) -> bool:
    def der(pem: str | bytes) -> bytes:
        return ssl.PEM_cert_to_DER_cert(pem.decode() if isinstance(pem, bytes) else pem)

    return der(pem_a) == der(pem_b)


Serve = Callable[..., ServerThread]


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True once the server closes ``sock`` (after any bytes); False if it is still open."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


# --- HTTPS: scope, extension, versions ---------------------------------------------------


def test_https_request_sees_scheme_and_tls_extension(serve: Serve, pki: PKI) -> None:
    with (
        serve(echo_scope, **pki.options()) as server,
        httpx.Client(verify=pki.client_context()) as client,
    ):
        assert server.url.startswith("https://127.0.0.1:")
        response = client.get(server.url + "/x")
        client_side = response.extensions["network_stream"].get_extra_info("ssl_object")
        version, cipher = client_side.version(), client_side.cipher()[0]
    assert response.status_code == 200
    seen = response.json()
    assert seen["scheme"] == "https"
    tls = seen["tls"]
    assert same_certificate(tls["server_cert"], pki.leaf_pem)
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    # What the client negotiated is what the app is told, as wire numbers (RFC 8446 4.2.1).
    assert tls["tls_version"] == {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}[version]
    assert isinstance(tls["cipher_suite"], int) and 0 < tls["cipher_suite"] <= 0xFFFF
    if version == "TLSv1.3":
        names = {"TLS_AES_256_GCM_SHA384": 0x1302, "TLS_AES_128_GCM_SHA256": 0x1301,
                 "TLS_CHACHA20_POLY1305_SHA256": 0x1303}  # fmt: skip
        assert tls["cipher_suite"] == names[cipher]


def test_plain_tcp_has_no_tls_extension(serve: Serve) -> None:
    # ASGI TLS extension: "For non-TLS connections, the ASGI server is forbidden from
    # providing this extension."
    with serve(echo_scope) as server:
        seen = httpx.get(server.url).json()
    assert seen == {"scheme": "http", "tls": None}


def test_tls_1_2_only_with_ssl_version_5(serve: Serve, pki: PKI) -> None:
    with serve(echo_scope, **pki.options(ssl_version=5)) as server:
        seen = httpx.get(server.url, verify=pki.client_context()).json()
    assert seen["tls"]["tls_version"] == 0x0303
    assert seen["tls"]["cipher_suite"] is not None


def test_ssl_ciphers_chooses_the_tls_1_2_suite(serve: Serve, pki: PKI) -> None:
    # trustme's keys are ECDSA; TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 is {0xC0,0x2B} (RFC 5289).
    options = pki.options(ssl_version=5, ssl_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    with serve(echo_scope, **options) as server:
        seen = httpx.get(server.url, verify=pki.client_context()).json()
    assert seen["tls"]["tls_version"] == 0x0303
    assert seen["tls"]["cipher_suite"] == 0xC02B


def test_secure_defaults(pki: PKI) -> None:
    tls = load_tls(Config(app="main:app", **pki.options()))
    assert tls is not None
    context = tls.context
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_NONE
    # No public CA is trusted for client certificates unless --ssl-ca-certs names one.
    assert context.cert_store_stats()["x509_ca"] == 0
    names = {c["name"] for c in context.get_ciphers()}
    assert not {n for n in names if "RC4" in n or "3DES" in n or "NULL" in n or "MD5" in n}


def test_keep_alive_requests_share_one_handshake(serve: Serve, pki: PKI) -> None:
    with (
        serve(echo_scope, **pki.options()) as server,
        httpx.Client(verify=pki.client_context()) as client,
    ):
        first = client.get(server.url)
        second = client.get(server.url)
        assert first.extensions["network_stream"] is second.extensions["network_stream"]
    assert first.json() == second.json()


def tls_1_1_client(pki: PKI) -> ssl.SSLContext | None:
    """A client context limited to TLS 1.1, if this OpenSSL can still complete such a handshake.

    Proven in memory against a server context that allows TLS 1.1, so that the test below
    shows dualcorn refusing the version, not the local OpenSSL being unable to offer it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the point of the test
        try:
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            pki.ca.configure_trust(client)
            client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_1
            client.set_ciphers("DEFAULT:@SECLEVEL=0")
            permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            permissive.minimum_version = ssl.TLSVersion.TLSv1_1
            permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
            permissive.load_cert_chain(pki.certfile, pki.keyfile)
        except (ssl.SSLError, ValueError):
            return None
    a_in, a_out, b_in, b_out = (ssl.MemoryBIO() for _ in range(4))
    ours = client.wrap_bio(a_in, a_out, server_hostname="127.0.0.1")
    theirs = permissive.wrap_bio(b_in, b_out, server_side=True)
    for _ in range(10):
        for side, inbox, outbox in ((ours, a_in, b_out), (theirs, b_in, a_out)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return None
            if outbox.pending:
                inbox.write(outbox.read())
        if ours.version() == "TLSv1.1" and theirs.version() == "TLSv1.1":
            return client
        b_in.write(a_out.read())
    return None


def test_tls_1_1_is_refused(serve: Serve, pki: PKI, errors: pytest.LogCaptureFixture) -> None:
    old = tls_1_1_client(pki)
    if old is None:
        pytest.skip("the local OpenSSL cannot complete a TLS 1.1 handshake even at level 0")
    with serve(echo_scope, **pki.options()) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with raw, pytest.raises(ssl.SSLError):
            old.wrap_socket(raw, server_hostname="127.0.0.1")
        # The server goes on serving modern clients.
        assert httpx.get(server.url, verify=pki.client_context()).status_code == 200
    # Refused by the server for the version it does not speak, and said at debug level.
    refusals = [r for r in errors.records if "UNSUPPORTED_PROTOCOL" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.DEBUG


def test_alpn_selects_http_1_1(serve: Serve, pki: PKI) -> None:
    # ALPN (RFC 7301): with --no-http2 a client offering h2 first gets HTTP/1.1, the protocol
    # served (with HTTP/2 on, h2 is chosen: tests/test_http2_tls.py).
    context = pki.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with serve(echo_scope, http2=False, **pki.options()) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(12) == b"HTTP/1.1 200"


def test_handshake_in_progress_at_shutdown_is_served(serve: Serve, pki: PKI) -> None:
    """A client accepted just before a graceful stop finishes its handshake and its request
    (a rolling restart must not reset it), answered with "connection: close"."""
    server = serve(echo_scope, **pki.options()).__enter__()
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    state = server.server.state
    assert state is not None
    deadline = time.monotonic() + 10
    while not state.connections and time.monotonic() < deadline:
        time.sleep(0.01)  # until the server has accepted it (state of another thread)
    assert state.connections, "the connection was not accepted"
    server.server.stop()
    with pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in response.lower()


# --- Client certificates (mTLS) -----------------------------------------------------------


def test_optional_client_certificate(serve: Serve, pki: PKI) -> None:
    options = pki.options(ssl_cert_reqs=1, ssl_ca_certs=pki.ca_file)
    with serve(echo_scope, **options) as server:
        anonymous = httpx.get(server.url, verify=pki.client_context()).json()
        alice = httpx.get(server.url, verify=pki.client_context(with_cert=True)).json()
    assert anonymous["tls"]["client_cert_chain"] == []
    assert anonymous["tls"]["client_cert_name"] is None
    chain = alice["tls"]["client_cert_chain"]
    assert len(chain) >= 1
    assert same_certificate(chain[0], pki.client.cert_chain_pems[0].bytes())
    name = alice["tls"]["client_cert_name"]
    assert name.startswith("CN=alice,") and "O=trustme" in name
    assert alice["tls"]["client_cert_error"] is None
    # Optional is not "anything goes": a certificate the CA did not sign fails the handshake.
    stranger = pki.client_context()
    trustme.CA().issue_cert("mallory@example.com").configure_cert(stranger)
    with serve(echo_scope, **options) as server, pytest.raises(httpx.TransportError):
        httpx.get(server.url, verify=stranger)


def test_client_certificate_signed_by_an_intermediate(serve: Serve, pki: PKI) -> None:
    intermediate = pki.ca.create_child_ca()
    bob = intermediate.issue_cert("bob@example.com", common_name="bob")
    context = pki.client_context()
    bob.configure_cert(context)  # sends bob's certificate and the intermediate's
    with serve(echo_scope, **pki.options(ssl_cert_reqs=2, ssl_ca_certs=pki.ca_file)) as server:
        chain = httpx.get(server.url, verify=context).json()["tls"]["client_cert_chain"]
    # ASGI TLS extension: "The first certificate is the client certificate."
    assert same_certificate(chain[0], bob.cert_chain_pems[0].bytes())
    if sys.version_info >= (3, 13):  # the rest of the chain is readable from 3.13 on
        assert len(chain) == 2 and same_certificate(chain[1], intermediate.cert_pem.bytes())


def test_required_client_certificate(
    serve: Serve, pki: PKI, tmp_path: Path, errors: pytest.LogCaptureFixture
) -> None:
    options = pki.options(ssl_cert_reqs=2, ssl_ca_certs=pki.ca_file)
    stranger_ca = trustme.CA()
    stranger = ssl.create_default_context()
    pki.ca.configure_trust(stranger)
    stranger_ca.issue_cert("mallory@example.com", common_name="mallory").configure_cert(stranger)
    with serve(echo_scope, **options) as server:
        alice = httpx.get(server.url, verify=pki.client_context(with_cert=True))
        assert alice.json()["tls"]["client_cert_name"].startswith("CN=alice,")
        # No certificate, and one from a CA the server does not trust: refused in the
        # handshake (TLS 1.3 reports it to the client after its Finished, on the first read).
        for context in (pki.client_context(), stranger):
            with pytest.raises(httpx.TransportError):
                httpx.get(server.url, verify=context)
        assert httpx.get(server.url, verify=pki.client_context(with_cert=True)).status_code == 200
    failures = [r for r in errors.records if "TLS handshake with" in r.getMessage()]
    assert len(failures) >= 2 and all(r.levelno == logging.DEBUG for r in failures)


# --- WebSockets and WSGI ------------------------------------------------------------------


async def test_wss_websocket(serve: Serve, pki: PKI) -> None:
    from websockets.asyncio.client import connect

    with serve(echo_scope, **pki.options(ssl_cert_reqs=1, ssl_ca_certs=pki.ca_file)) as server:
        url = server.url.replace("https://", "wss://") + "/ws"
        async with connect(url, ssl=pki.client_context(with_cert=True)) as ws:
            await ws.send("hello")
            seen = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert seen["scheme"] == "wss" and seen["text"] == "hello"
    assert same_certificate(seen["tls"]["server_cert"], pki.leaf_pem)
    assert seen["tls"]["client_cert_name"].startswith("CN=alice,")


def wsgi_environ(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = json.dumps({"url_scheme": environ["wsgi.url_scheme"],
                       "HTTPS": environ.get("HTTPS")}).encode()  # fmt: skip
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def test_wsgi_app_sees_https(serve: Serve, pki: PKI) -> None:
    with serve(wsgi_environ, interface="wsgi", **pki.options()) as server:
        seen = httpx.get(server.url, verify=pki.client_context()).json()
    assert seen == {"url_scheme": "https", "HTTPS": "on"}
    with serve(wsgi_environ, interface="wsgi") as server:
        assert httpx.get(server.url).json() == {"url_scheme": "http", "HTTPS": None}


# --- Bad clients: a clean close, never a traceback or a stuck connection -------------------


def test_stalled_handshake_is_closed_by_the_head_timeout(
    serve: Serve, pki: PKI, errors: pytest.LogCaptureFixture
) -> None:
    with serve(echo_scope, timeout_request_head=0.5, **pki.options()) as server:
        # One client sends nothing; the other starts a ClientHello and stops half-way.
        hello = _client_hello(pki)
        for first_bytes in (b"", hello[: len(hello) // 2]):
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
                raw.sendall(first_bytes)
                # Closed by the server (generous wait: the assertion is that it happens).
                assert closed_by_server(raw, within=30)
        assert httpx.get(server.url, verify=pki.client_context()).status_code == 200
    timeouts = [r for r in errors.records if "--timeout-request-head" in r.getMessage()]
    assert len(timeouts) == 2 and all(r.levelno == logging.DEBUG for r in timeouts)


def _client_hello(pki: PKI) -> bytes:
    """The first flight of a real TLS client, taken from an in-memory handshake."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = pki.client_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def test_plain_http_to_the_tls_port_is_closed_cleanly(
    serve: Serve, pki: PKI, errors: pytest.LogCaptureFixture
) -> None:
    # The head timeout is far longer than the wait: a close means the server noticed.
    with serve(echo_scope, timeout_request_head=60, **pki.options()) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            raw.settimeout(20)
            assert raw.recv(100) == b""  # not a byte of plain HTTP back, and closed
        assert httpx.get(server.url, verify=pki.client_context()).status_code == 200
    lines = [r for r in errors.records if "plain HTTP was sent to the TLS port" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.DEBUG


def test_tls_to_a_plain_port_is_closed_cleanly(
    serve: Serve, pki: PKI, errors: pytest.LogCaptureFixture
) -> None:
    with serve(echo_scope, timeout_request_head=60) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        with raw, pytest.raises(ssl.SSLError):
            pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1")
        assert httpx.get(server.url).status_code == 200
    assert any(r.levelno == logging.DEBUG and "refusing request" in r.getMessage()
               for r in errors.records)  # fmt: skip


def test_client_that_resets_mid_handshake(serve: Serve, pki: PKI) -> None:
    with serve(echo_scope, **pki.options()) as server:
        for _ in range(3):
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            raw.sendall(_client_hello(pki))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            raw.close()  # RST
        assert httpx.get(server.url, verify=pki.client_context()).status_code == 200


# --- Configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"ssl_keyfile": "k.pem"}, "ssl_keyfile needs ssl_certfile"),
        ({"ssl_ca_certs": "ca.pem"}, "ssl_ca_certs needs ssl_certfile"),
        ({"ssl_certfile": "c.pem", "ssl_cert_reqs": 2}, "ssl_ca_certs"),
        ({"ssl_certfile": "c.pem", "ssl_cert_reqs": 3}, "ssl_cert_reqs must be"),
        ({"ssl_certfile": "c.pem", "ssl_version": 4}, "RFC 8996"),
    ],
)
def test_config_refuses_inconsistent_tls_options(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Config(app="main:app", **options)


def test_password_is_not_in_the_config_repr() -> None:
    config = Config(app="main:app", ssl_certfile="c.pem", ssl_keyfile_password="s3cret")
    assert "s3cret" not in repr(config)


def test_rfc4514_names() -> None:
    subject = ((("countryName", "US"),), (("organizationName", "A, B"),),
               (("commonName", " #lead"), ("userId", "x+y")))  # fmt: skip
    assert _rfc4514(subject) == "CN=\\ #lead+UID=x\\+y,O=A\\, B,C=US"


def test_connect_and_close_leaves_nothing_behind(serve: Serve, pki: PKI) -> None:
    with serve(echo_scope, **pki.options()) as server:
        for _ in range(5):
            socket.create_connection(("127.0.0.1", server.port), timeout=10).close()
        assert httpx.get(server.url, verify=pki.client_context()).status_code == 200
        state = server.server.state
        assert state is not None
        deadline = time.monotonic() + 10
        while state.connections and time.monotonic() < deadline:
            time.sleep(0.01)  # the server notices the closes (state of another thread)
        # Well within the 60 s head timeout: nothing waits on a dead socket.
        assert not state.connections
