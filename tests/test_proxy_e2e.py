"""Real reverse proxies in front of the real ``dualcorn`` command.

* nginx (Debian's package) terminates TLS with a test CA and forwards with the usual
  ``proxy_set_header`` lines: FastAPI sees the real client and ``https``, Flask's
  ``url_for(..., _external=True)`` builds ``https://`` links, a WebSocket echoes (wss to
  nginx, ws to dualcorn), and a client prepending its own ``X-Forwarded-For`` gains nothing.
* HAProxy (Debian's package) sends PROXY protocol v2 (and v1): the app sees the real client,
  over HTTP/1.1 and over h2c (the preface follows the preamble).
* HAProxy in HTTP mode talks h2c to dualcorn (``proto h2``) with ``option forwardfor`` and an
  ``X-Forwarded-Proto``: proxy headers over HTTP/2, for an ASGI and a WSGI app.
* A spoofed ``X-Forwarded-For`` from a peer outside ``--forwarded-allow-ips`` changes nothing,
  over HTTP/1.1 or HTTP/2.

The test client connects from 127.0.0.2 (any 127/8 address is loopback on Linux), so "the
real client" differs from the proxy's 127.0.0.1.  Each test skips with its reason when the
proxy is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import run_dualcorn

pytestmark = pytest.mark.timeout(120)

CLIENT_ADDRESS = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait (bounded) until a third-party proxy accepts connections on ``port``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"the proxy exited with {proc.returncode}:\n{text}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)  # an external process offers no readiness event to wait on
    pytest.fail(f"the proxy did not listen on {port} within 20 s")


@contextlib.contextmanager
def running(argv: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        wait_listening(port, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path (mode 0700): nginx workers run as nobody and use temp paths here.
    path = Path(tempfile.mkdtemp(prefix="dualcorn-proxy-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tls(workdir: Path) -> tuple[Path, Path, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme", reason="trustme makes the test CA")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_path), append=True)
    cert.private_key_pem.write_to_path(str(key_path))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return cert_path, key_path, client_context


NGINX_CONF = """
daemon off;
worker_processes 1;
user nobody nogroup;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            {host_line}
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(
    workdir: Path,
    tls: tuple[Path, Path, ssl.SSLContext],
    upstream: int,
    host_line: str = "proxy_set_header Host $http_host;",
) -> Iterator[int]:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if binary is None:
        pytest.skip("nginx is not installed (Debian package nginx)")
    if os.geteuid() != 0:
        pytest.skip("nginx with 'user nobody' needs root")
    cert, key, _ = tls
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            dir=workdir, port=port, cert=cert, key=key, upstream=upstream, host_line=host_line
        )
    )
    with running([binary, "-p", str(workdir), "-c", str(conf)], port, workdir / "error.log"):
        yield port


def client(context: ssl.SSLContext | bool = True, *, h2c: bool = False) -> httpx.Client:
    """httpx from CLIENT_ADDRESS; ``h2c``: HTTP/2 with prior knowledge on plain TCP."""
    transport = httpx.HTTPTransport(
        local_address=CLIENT_ADDRESS, verify=context, http1=not h2c, http2=h2c
    )
    return httpx.Client(transport=transport, timeout=20)


def haproxy_binary() -> str:
    binary = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
    )
    if binary is None:
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    return binary


def test_nginx_tls_fastapi_sees_client_and_https(workdir: Path, tls: Any) -> None:
    with (
        run_dualcorn("tests.apps.proxied:fastapi_app", "--port", "0") as server,
        nginx(workdir, tls, server.port) as port,
        client(tls[2]) as http,
    ):
        answer = http.get(f"https://localhost:{port}/whoami").json()
        assert answer["client"] == CLIENT_ADDRESS
        assert answer["scheme"] == "https"
        assert answer["link"] == f"https://localhost:{port}/whoami"
        # A client prepending its own hop gains nothing: nginx appends the real address.
        spoofed = http.get(
            f"https://localhost:{port}/whoami", headers={"X-Forwarded-For": "6.6.6.6"}
        ).json()
        assert spoofed["client"] == CLIENT_ADDRESS
        # And dualcorn's access log names the real client, not nginx.
        assert server.stop() == 0
    assert f'{CLIENT_ADDRESS}:0 - "GET /whoami HTTP/1.1" 200' in server.stderr_text()


@pytest.mark.parametrize(
    "host_line",
    [
        "proxy_set_header Host $http_host;",
        # nginx's default Host is the upstream's address: the link's host comes from here.
        "proxy_set_header X-Forwarded-Host $http_host;",
    ],
)
def test_nginx_tls_flask_url_for_is_https(workdir: Path, tls: Any, host_line: str) -> None:
    with (
        run_dualcorn("tests.apps.proxied:flask_app", "--port", "0") as server,
        nginx(workdir, tls, server.port, host_line) as port,
        client(tls[2]) as http,
    ):
        answer = http.get(f"https://localhost:{port}/link").json()
    assert answer == {
        "link": f"https://localhost:{port}/link",
        "remote_addr": CLIENT_ADDRESS,
        "scheme": "https",
    }


def test_nginx_tls_websocket_echo(workdir: Path, tls: Any) -> None:
    from websockets.sync.client import connect

    with (
        run_dualcorn("tests.apps.proxied:fastapi_app", "--port", "0") as server,
        nginx(workdir, tls, server.port) as port,
    ):
        sock = socket.socket()
        sock.settimeout(20)
        sock.bind((CLIENT_ADDRESS, 0))
        sock.connect(("127.0.0.1", port))
        uri = f"wss://localhost:{port}/ws"
        with connect(uri, sock=sock, ssl=tls[2], server_hostname="localhost") as ws:
            ws.send("hello through nginx")
            answer = json.loads(ws.recv(timeout=20))
    assert answer == {"echo": "hello through nginx", "scheme": "wss", "client": CLIENT_ADDRESS}


HAPROXY_CONF = """
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend front
    bind 127.0.0.1:{port}
    default_backend back
backend back
    server dualcorn 127.0.0.1:{upstream} {send}
"""


@pytest.mark.parametrize("send", ["send-proxy-v2", "send-proxy"])
def test_haproxy_proxy_protocol(workdir: Path, send: str) -> None:
    binary = haproxy_binary()
    with run_dualcorn(
        "tests.apps.proxied:fastapi_app", "--port", "0", "--proxy-protocol"
    ) as server:
        port = free_port()
        conf = workdir / "haproxy.cfg"
        conf.write_text(HAPROXY_CONF.format(port=port, upstream=server.port, send=send))
        with running([binary, "-db", "-f", str(conf)], port, workdir / "haproxy.log"):
            # The readiness probe above connected without sending anything: HAProxy relays
            # it with a preamble and dualcorn closes it after the preamble (nothing follows).
            with client(False) as http:
                answer = http.get(f"http://127.0.0.1:{port}/whoami").json()
            # HTTP/2 with prior knowledge through the same TCP relay: preamble, then preface.
            with client(False, h2c=True) as http:
                over_h2 = http.get(f"http://127.0.0.1:{port}/whoami")
            assert over_h2.http_version == "HTTP/2"
            assert over_h2.json()["client"] == CLIENT_ADDRESS
            # Without a preamble, the same server refuses a direct request.
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n")
                # Closed with the request unread, the kernel may reset: no answer either way.
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(100) == b""
    assert answer["client"] == CLIENT_ADDRESS
    assert answer["port"] > 0
    assert answer["scheme"] == "http"


HAPROXY_H2C_CONF = """
global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend front
    bind 127.0.0.1:{port}
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend back
backend back
    server dualcorn 127.0.0.1:{upstream} proto h2
"""


@pytest.mark.parametrize(
    ("app", "path"),
    [("tests.apps.proxied:fastapi_app", "/whoami"), ("tests.apps.proxied:flask_app", "/link")],
    ids=["asgi", "wsgi"],
)
def test_haproxy_h2c_upstream_proxy_headers(workdir: Path, app: str, path: str) -> None:
    """HAProxy speaks HTTP/2 to dualcorn (h2c): X-Forwarded-For and -Proto from a trusted
    proxy reach the app as over HTTP/1.1, and the access line says HTTP/2.0."""
    binary = haproxy_binary()
    with run_dualcorn(app, "--port", "0") as server:
        port = free_port()
        conf = workdir / "haproxy.cfg"
        conf.write_text(HAPROXY_H2C_CONF.format(port=port, upstream=server.port))
        relay = running([binary, "-db", "-f", str(conf)], port, workdir / "haproxy.log")
        with relay, client(False) as http:
            answer = http.get(f"http://127.0.0.1:{port}{path}").json()
        assert server.stop() == 0
    if path == "/whoami":
        assert answer["client"] == CLIENT_ADDRESS
    else:
        assert answer["remote_addr"] == CLIENT_ADDRESS
    assert answer["scheme"] == "https"
    assert answer["link"] == f"https://127.0.0.1:{port}{path}"
    assert f'{CLIENT_ADDRESS}:0 - "GET {path} HTTP/2.0" 200' in server.stderr_text()


@pytest.mark.parametrize("h2c", [False, True], ids=["http1", "h2c"])
def test_spoofed_header_from_an_untrusted_peer_changes_nothing(h2c: bool) -> None:
    with (
        run_dualcorn(
            "tests.apps.proxied:fastapi_app", "--port", "0", "--forwarded-allow-ips", "192.0.2.1"
        ) as server,
        client(h2c=h2c) as http,
    ):
        spoof = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
        spoof["Forwarded"] = "for=6.6.6.6;proto=https"
        response = http.get(f"http://127.0.0.1:{server.port}/whoami", headers=spoof)
        answer = response.json()
    assert response.http_version == ("HTTP/2" if h2c else "HTTP/1.1")
    assert answer["client"] == CLIENT_ADDRESS
    assert answer["scheme"] == "http"
    assert answer["link"] == f"http://127.0.0.1:{server.port}/whoami"
