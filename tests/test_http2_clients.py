"""Real HTTP/2 clients against the real server: httpx, curl, nghttp and headless Chromium.

Each client talks to ``python -m dualcorn --http2`` on 127.0.0.1:0, over h2c (HTTP/2 with
prior knowledge on plain TCP) and over TLS (ALPN ``h2``, a trustme test CA), serving a
Starlette app and a Flask app (tests/apps/h2_apps.py) with ``--root-path /api``: a GET whose
answer says what the app saw, a POST body of 300 KiB and a streamed 256 KiB response (both
past HTTP/2's 64 KiB default window), and the access log line with ``HTTP/2.0``.

Every check fails if the exchange fell back to HTTP/1.1: the client reports the protocol it
used (httpx ``http_version``, curl ``%{http_version}``, Chromium's DevTools
``response.protocol``; nghttp speaks nothing else), the app reports the one it saw, and the
server's access line names it.

``DUALCORN_H2_TEST_SERVER=hypercorn`` runs the same clients against hypercorn, to tell a
client problem from a server one (dualcorn-only checks, such as its access line, are skipped).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.apps.h2_apps import stream_body
from tests.helpers import REPO_ROOT, DualcornProcess, run_dualcorn

httpx = pytest.importorskip("httpx")
pytest.importorskip("h2")  # httpx's HTTP/2 support
trustme = pytest.importorskip("trustme")
pytest.importorskip("starlette")
pytest.importorskip("flask")

pytestmark = pytest.mark.timeout(120)

SERVER = os.environ.get("DUALCORN_H2_TEST_SERVER", "dualcorn")
TARGETS = {"asgi": "tests.apps.h2_apps:asgi_app", "wsgi": "tests.apps.h2_apps:wsgi_app"}
ROOT_PATH = "/api"
UPLOAD = bytes(range(256)) * 1200  # 300 KiB: more than the 64 KiB initial window
WAIT = 60.0  # seconds any one client may take


@dataclass
class Served:
    """A server under test: where it listens and what it has logged."""

    interface: str
    tls: bool
    port: int
    cafile: str
    spki: str  # base64 SHA-256 of the certificate's public key, for Chromium
    process: DualcornProcess | _Peer

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.process.stderr_text() + self.process.stdout_text()

    def access_line(self, path: str, timeout: float = 10.0) -> str:
        """The access line of ``path`` (a unique query marks each client's request)."""
        if SERVER != "dualcorn":
            pytest.skip("the access line checked here is dualcorn's")
        pattern = re.compile(r".*\"[A-Z]+ " + re.escape(path) + r" HTTP/[^\"]*\" \d+.*")
        deadline = time.monotonic() + timeout
        while True:
            found = pattern.search(self.log())
            if found:
                return found.group(0)
            if time.monotonic() > deadline:
                raise AssertionError(f"no access line for {path}:\n{self.log()[-3000:]}")
            time.sleep(0.05)  # the line is written by another process; poll its pipe, bounded


class _Peer:
    """A reference HTTP/2 server (hypercorn) for debugging the clients; its output kept."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: list[str] = []
        self._port = threading.Event()
        self.port = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, ""):
            self._lines.append(line)
            found = re.search(r"Running on https?://127\.0\.0\.1:(\d+)", line)
            if found and not self.port:
                self.port = int(found.group(1))
                self._port.set()
        self._port.set()

    def stderr_text(self) -> str:
        return "".join(self._lines)

    def stdout_text(self) -> str:
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@contextlib.contextmanager
def _hypercorn(target: str, tls: tuple[str, str] | None) -> Iterator[_Peer]:
    argv = [sys.executable, "-m", "hypercorn", target, "--bind", "127.0.0.1:0"]
    argv += ["--root-path", ROOT_PATH, "--access-logfile", "-"]
    if tls:
        argv += ["--certfile", tls[0], "--keyfile", tls[1]]
    peer = _Peer(argv)
    try:
        if not peer._port.wait(30) or not peer.port:
            raise RuntimeError(f"hypercorn did not start:\n{peer.stderr_text()}")
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str, str]:
    """(certificate, key, CA file, SPKI hash) for 127.0.0.1 from a throw-away CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    directory = tmp_path_factory.mktemp("h2certs")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, cafile = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(cafile))
    public = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki = base64.b64encode(hashlib.sha256(der).digest()).decode()
    return str(cert), str(key), str(cafile), spki


@pytest.fixture(
    scope="module",
    params=[("asgi", False), ("asgi", True), ("wsgi", False), ("wsgi", True)],
    ids=["asgi-h2c", "asgi-tls", "wsgi-h2c", "wsgi-tls"],
)
def served(request: pytest.FixtureRequest, certs: tuple[str, str, str, str]) -> Iterator[Served]:
    interface, tls = request.param
    cert, key, cafile, spki = certs
    target = TARGETS[interface]
    if SERVER == "hypercorn":
        with _hypercorn(target, (cert, key) if tls else None) as peer:
            yield Served(interface, tls, peer.port, cafile, spki, peer)
        return
    args = [target, "--port", "0", "--http2", "--root-path", ROOT_PATH, "--lifespan", "off"]
    if tls:
        args += ["--ssl-certfile", cert, "--ssl-keyfile", key]
    with run_dualcorn(*args) as server:
        assert server.port is not None
        yield Served(interface, tls, server.port, cafile, spki, server)


def _client_of(served: Served, **options: Any) -> Any:
    if served.tls:  # ALPN offers h2 (and http/1.1: the server must pick h2)
        return httpx.Client(http2=True, verify=_trust(served), timeout=WAIT, **options)
    # h2c with prior knowledge: httpx sends the HTTP/2 preface straight away.
    return httpx.Client(http1=False, http2=True, timeout=WAIT, **options)


def _trust(served: Served) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=served.cafile)


def _assert_app_saw_http2(served: Served, seen: dict[str, Any]) -> None:
    if served.interface == "asgi":
        assert seen["version"] == "2", seen  # ASGI http_version
        assert seen["root"] == ROOT_PATH, seen
    else:
        assert seen["version"] in ("HTTP/2", "HTTP/2.0"), seen  # WSGI SERVER_PROTOCOL
        assert seen["root"] == ROOT_PATH, seen  # SCRIPT_NAME
    assert seen["url"] == f"{served.base}{ROOT_PATH}/info", seen
    assert seen["scheme"] == ("https" if served.tls else "http"), seen


def _digest(body: bytes) -> dict[str, Any]:
    return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


# --- httpx ---------------------------------------------------------------------------------


def test_httpx(served: Served) -> None:
    with _client_of(served, base_url=served.base) as client:
        info = client.get("/info?client=httpx")
        assert info.http_version == "HTTP/2" and info.status_code == 200
        _assert_app_saw_http2(served, info.json())

        echo = client.post(
            "/echo?client=httpx",
            content=UPLOAD,
            headers={"content-type": "application/octet-stream"},
        )
        assert echo.http_version == "HTTP/2" and echo.status_code == 200
        assert echo.json() == _digest(UPLOAD)

        pieces = []
        with client.stream("GET", "/stream?client=httpx") as streamed:
            assert streamed.http_version == "HTTP/2" and streamed.status_code == 200
            pieces = list(streamed.iter_bytes())
        assert b"".join(pieces) == stream_body()
    line = served.access_line("/info?client=httpx")
    assert '"GET /info?client=httpx HTTP/2.0" 200' in line, line
    assert '"POST /echo?client=httpx HTTP/2.0" 200' in served.log()


def test_httpx_many_streams_on_one_connection(served: Served) -> None:
    """Concurrent requests multiplexed on one HTTP/2 connection all come back right."""
    import asyncio

    async def run() -> list[Any]:
        kwargs: dict[str, Any] = {"http2": True, "timeout": WAIT, "base_url": served.base}
        if served.tls:
            kwargs["verify"] = _trust(served)
        else:
            kwargs["http1"] = False
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(limits=limits, **kwargs) as client:
            return await asyncio.gather(
                *(client.get(f"/info?client=multi&n={n}") for n in range(50))
            )

    responses = asyncio.run(run())
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert all(r.status_code == 200 for r in responses)
    for response in responses:
        _assert_app_saw_http2(served, response.json())


# --- curl ----------------------------------------------------------------------------------


def _curl(served: Served, path: str, *extra: str) -> tuple[bytes, str]:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    argv = [curl, "-sS", "--max-time", str(int(WAIT)), "-w", "\n%{http_version} %{http_code}"]
    if served.tls:
        argv += ["--http2", "--cacert", served.cafile]
    else:
        argv += ["--http2-prior-knowledge"]
    done = subprocess.run(
        [*argv, *extra, served.base + path], capture_output=True, timeout=WAIT + 10, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    body, _, written = done.stdout.rpartition(b"\n")
    return body, written.decode()


def test_curl(served: Served, tmp_path: Path) -> None:
    body, written = _curl(served, "/info?client=curl")
    assert written == "2 200", written  # %{http_version} is "2" for HTTP/2, "1.1" otherwise
    _assert_app_saw_http2(served, json.loads(body))

    upload = tmp_path / "upload.bin"
    upload.write_bytes(UPLOAD)
    body, written = _curl(
        served,
        "/echo?client=curl",
        "--data-binary",
        f"@{upload}",
        "-H",
        "content-type: application/octet-stream",
    )
    assert written == "2 200", written
    assert json.loads(body) == _digest(UPLOAD)

    body, written = _curl(served, "/stream?client=curl")
    assert written == "2 200" and body == stream_body()
    line = served.access_line("/stream?client=curl")
    assert '"GET /stream?client=curl HTTP/2.0" 200' in line, line


# --- nghttp --------------------------------------------------------------------------------


def _nghttp(served: Served, path: str, *extra: str) -> str:
    nghttp = shutil.which("nghttp")
    if nghttp is None:
        pytest.skip("nghttp is not installed (apt-get install nghttp2-client)")
    # nghttp speaks only HTTP/2: h2c with prior knowledge for http://, ALPN h2 for https://.
    argv = [nghttp, "-t", str(int(WAIT)), *extra, served.base + path]
    done = subprocess.run(argv, capture_output=True, timeout=WAIT + 10, check=False)
    output = done.stdout.decode(errors="replace")
    # stderr: nghttp's warnings ("Certificate verification failed": it has no CA option).
    assert done.returncode == 0, output + done.stderr.decode(errors="replace")
    return output


def test_nghttp(served: Served, tmp_path: Path) -> None:
    frames = _nghttp(served, "/info?client=nghttp", "-nv")
    assert "recv SETTINGS frame" in frames, frames
    # nghttp opens its request on stream 13 (1-11 carry its RFC 7540 priority tree).
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", frames), frames
    assert re.search(r"recv DATA frame <length=\d+, flags=0x0[01], stream_id=\d+>", frames), frames
    if served.tls:
        assert "The negotiated protocol: h2" in frames, frames

    body = _nghttp(served, "/info?client=nghttp-body")
    _assert_app_saw_http2(served, json.loads(body))

    upload = tmp_path / "upload.bin"
    upload.write_bytes(UPLOAD)
    body = _nghttp(served, "/echo?client=nghttp", "-d", str(upload))
    assert json.loads(body) == _digest(UPLOAD)

    streamed = _nghttp(served, "/stream?client=nghttp")
    assert streamed.encode() == stream_body()
    line = served.access_line("/echo?client=nghttp")
    assert '"POST /echo?client=nghttp HTTP/2.0" 200' in line, line


# --- headless Chromium over TLS --------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium installed (apt-get install chromium)")


class _DevTools:
    """A minimal Chrome DevTools Protocol client over the browser's WebSocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + WAIT
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(event)
            if event.get("method") == method:
                return event


@contextlib.contextmanager
def _browser(profile: Path, spki: str) -> Iterator[_DevTools]:
    pytest.importorskip("websockets")
    argv = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--no-default-browser-check", f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        # Trust the test certificate by its public key, as a pinned self-signed site would be.
        f"--ignore-certificate-errors-spki-list={spki}",
        "about:blank",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + WAIT
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)  # Chromium writes the file once it listens; bounded wait
        port, path = port_file.read_text().splitlines()[:2]
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=WAIT) as ws:
            yield _DevTools(ws)
    finally:
        proc.kill()
        proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()


def test_chromium_loads_a_page_over_h2(served: Served, tmp_path: Path) -> None:
    if not served.tls:
        pytest.skip("browsers speak HTTP/2 only over TLS (ALPN h2)")
    with _browser(tmp_path / "profile", served.spki) as devtools:
        target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
        session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        devtools.call("Network.enable", session)
        devtools.call("Page.enable", session)
        page = f"{served.base}/page?client=chromium"
        devtools.call("Page.navigate", session, url=page)
        devtools.wait_event("Page.loadEventFired")
        deadline = time.monotonic() + WAIT
        title = ""
        while not title.startswith("app saw") and time.monotonic() < deadline:
            title = devtools.call(
                "Runtime.evaluate", session, expression="document.title", returnByValue=True
            )["result"]["value"]
            time.sleep(0.1)  # the page's fetch runs in the browser; poll its title, bounded
        responses = {
            e["params"]["response"]["url"]: e["params"]["response"]
            for e in devtools.events
            if e.get("method") == "Network.responseReceived"
        }
    assert page in responses, list(responses)
    assert responses[page]["status"] == 200
    assert responses[page]["protocol"] == "h2", responses[page]["protocol"]
    fetched = f"{served.base}/info"
    assert fetched in responses, list(responses)
    assert responses[fetched]["protocol"] == "h2"
    expected = "2" if served.interface == "asgi" else ("HTTP/2", "HTTP/2.0")
    assert title.removeprefix("app saw ") in expected, title
    line = served.access_line("/page?client=chromium")
    assert '"GET /page?client=chromium HTTP/2.0" 200' in line, line
