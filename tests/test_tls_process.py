"""TLS as a user runs it: the ``dualcorn`` command, its start-up errors, ``openssl s_client``,
and a renewed certificate picked up by a ``HUP`` rolling restart and by ``--reload``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import child_env, run_dualcorn
from tests.supervising import start_dualcorn, wait_for
from tests.test_tls import PKI, make_pki
from tests.test_workers import live_workers, wait_serving

trustme = pytest.importorskip("trustme")

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = scope["scheme"].encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""
BASE = ("app:app", "--port", "0", "--lifespan", "off", "--no-access-log")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    certs = tmp_path / "certs"
    certs.mkdir()
    return make_pki(certs)


def tls_args(pki: PKI) -> tuple[str, ...]:
    return ("--ssl-certfile", pki.certfile, "--ssl-keyfile", pki.keyfile)


# --- Start-up errors: one line, exit status 3 ---------------------------------------------


def start_failure(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "dualcorn", *BASE, *args],
        cwd=cwd,
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr


def encrypted_key(pki: PKI, directory: Path, password: bytes) -> str:
    from cryptography.hazmat.primitives import serialization

    with open(pki.keyfile, "rb") as file:
        key = serialization.load_pem_private_key(file.read(), None)
    path = directory / "encrypted.pem"
    encryption = serialization.BestAvailableEncryption(password)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.write_bytes(pem)
    return str(path)


def broken_setups(pki: PKI, app_dir: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, what the one error line must say)."""
    other_ca = trustme.CA()
    other = other_ca.issue_cert("127.0.0.1")
    other_key = app_dir / "other-key.pem"
    other.private_key_pem.write_to_path(str(other_key))
    garbage = app_dir / "garbage.pem"
    garbage.write_text("not a certificate\n")
    locked = encrypted_key(pki, app_dir, b"right horse battery")
    return {
        "missing certfile": (["--ssl-certfile", str(app_dir / "nope.pem"), "--ssl-keyfile",
                              pki.keyfile], "--ssl-certfile"),
        "missing keyfile": (["--ssl-certfile", pki.certfile, "--ssl-keyfile",
                             str(app_dir / "nope.pem")], "--ssl-keyfile"),
        "key of another certificate": (["--ssl-certfile", pki.certfile, "--ssl-keyfile",
                                        str(other_key)], "is not the private key"),
        "wrong password": (["--ssl-certfile", pki.certfile, "--ssl-keyfile", locked,
                            "--ssl-keyfile-password", "wrong"], "--ssl-keyfile-password is wrong"),
        "no password for an encrypted key": (["--ssl-certfile", pki.certfile, "--ssl-keyfile",
                                              locked], "is encrypted"),
        "certfile without a certificate": (["--ssl-certfile", str(garbage), "--ssl-keyfile",
                                            pki.keyfile], "holds no PEM certificate"),
        "missing CA file": ([*tls_args(pki), "--ssl-ca-certs", str(app_dir / "nope.pem"),
                             "--ssl-cert-reqs", "2"], "--ssl-ca-certs"),
        "CA file without a certificate": ([*tls_args(pki), "--ssl-ca-certs", str(garbage),
                                           "--ssl-cert-reqs", "2"], "holds no usable PEM"),
    }  # fmt: skip


CASES = ["missing certfile", "missing keyfile", "key of another certificate", "wrong password",
         "no password for an encrypted key", "certfile without a certificate", "missing CA file",
         "CA file without a certificate"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_start_up_error_is_one_line_and_exit_status_3(case: str, pki: PKI, app_dir: Path) -> None:
    args, says = broken_setups(pki, app_dir)[case]
    code, stderr = start_failure(*args, cwd=app_dir)
    assert code == 3, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("dualcorn: error:")]
    assert len(errors) == 1 and says in errors[0], stderr
    assert "Traceback" not in stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_ca_file(pki: PKI, app_dir: Path) -> None:
    ca = Path(pki.ca_file)
    ca.chmod(0)
    code, stderr = start_failure(*tls_args(pki), "--ssl-ca-certs", str(ca), "--ssl-cert-reqs",
                                 "1", cwd=app_dir)  # fmt: skip
    assert code == 3 and "cannot be read" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("supervisor", [["--workers", "2"], ["--reload"]])
def test_supervisors_check_the_files_before_starting_anyone(
    supervisor: list[str], pki: PKI, app_dir: Path
) -> None:
    args, says = broken_setups(pki, app_dir)["key of another certificate"]
    code, stderr = start_failure(*args, *supervisor, cwd=app_dir)
    assert code == 3 and says in stderr and "Traceback" not in stderr
    assert "Starting worker" not in stderr


def test_password_from_the_environment(pki: PKI, app_dir: Path) -> None:
    locked = encrypted_key(pki, app_dir, b"right horse battery")
    env = {"DUALCORN_SSL_CERTFILE": pki.certfile, "DUALCORN_SSL_KEYFILE": locked,
           "DUALCORN_SSL_KEYFILE_PASSWORD": "right horse battery"}  # fmt: skip
    with run_dualcorn(*BASE, cwd=app_dir, env=env) as server:
        assert server.address is not None and server.address.startswith("https://")
        url = f"https://127.0.0.1:{server.port}/"
        assert httpx.get(url, verify=pki.client_context()).text == "https"
        assert server.stop() == 0


# --- openssl s_client -----------------------------------------------------------------------


def s_client(port: int, pki: PKI, *extra: str) -> subprocess.CompletedProcess[bytes]:
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", pki.ca_file,
         "-verify_return_error", "-brief", "-ign_eof", *extra],
        input=request,
        capture_output=True,
        timeout=30,
    )  # fmt: skip


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_bad_clients_leave_no_traceback_in_the_log(loop: str, pki: PKI, app_dir: Path) -> None:
    pytest.importorskip(loop)
    args = (*BASE, *tls_args(pki), "--loop", loop, "--timeout-request-head", "1",
            "--log-level", "debug")  # fmt: skip
    with run_dualcorn(*args, cwd=app_dir) as server:
        assert server.port
        address = ("127.0.0.1", server.port)
        with socket.create_connection(address, timeout=20) as raw:  # plain HTTP
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert raw.recv(10) == b""
        with socket.create_connection(address, timeout=20) as raw:  # garbage, then a stall
            raw.sendall(b"\x16\x03\x01\x00\x05hello")
            assert raw.recv(10) == b""
        with socket.create_connection(address, timeout=20) as raw:  # nothing at all
            assert raw.recv(10) == b""
        raw = socket.create_connection(address, timeout=20)  # a reset
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01" + b"\x00" * 7)
        raw.close()
        assert httpx.get(
            f"https://127.0.0.1:{server.port}/", verify=pki.client_context()
        ).is_success
        assert server.stop() == 0
    log = server.stderr_text()
    assert "Traceback" not in log and "ERROR" not in log, log
    assert log.count("TLS handshake with 127.0.0.1") >= 3


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_openssl_s_client_negotiates_tls_1_3_and_1_2(pki: PKI, app_dir: Path) -> None:
    with run_dualcorn(*BASE, *tls_args(pki), cwd=app_dir) as server:
        assert server.port
        modern = s_client(server.port, pki)
        pinned = s_client(server.port, pki, "-tls1_2")
        assert server.stop() == 0
    for done, version in ((modern, "TLSv1.3"), (pinned, "TLSv1.2")):
        details = done.stderr.decode(errors="replace")
        print(f"\nopenssl s_client: {details.strip()}")
        assert f"Protocol version: {version}" in details
        assert "Verification: OK" in details
        assert done.stdout.startswith(b"HTTP/1.1 200 ") and done.stdout.endswith(b"https")


# --- A renewed certificate, without downtime --------------------------------------------------


def renew(pki: PKI) -> bytes:
    """Write a new certificate and key for 127.0.0.1 (atomically, as certbot's symlinks do)."""
    leaf = pki.ca.issue_cert("127.0.0.1", "localhost")
    for data, path in ((leaf.cert_chain_pems[0].bytes(), pki.certfile),
                       (leaf.private_key_pem.bytes(), pki.keyfile)):  # fmt: skip
        Path(path + ".new").write_bytes(data)
        os.replace(path + ".new", path)
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


class CertPoller:
    """A client sending GET every 10 ms on a keep-alive connection, noting the server's cert."""

    def __init__(self, url: str, context: ssl.SSLContext) -> None:
        self.url = url
        self.context = context
        self.seen: list[bytes] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CertPoller:
        self._thread.start()
        wait_for(lambda: self.seen or self.failures, 15, "the first response")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        with httpx.Client(verify=self.context, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    with client.stream("GET", self.url) as response:
                        # Before the body is read: a response with "connection: close" (from
                        # a retiring worker) closes the stream once read.
                        stream = response.extensions["network_stream"]
                        der = stream.get_extra_info("ssl_object").getpeercert(True)
                        text = response.read().decode()
                    if response.status_code != 200 or text != "https":
                        self.failures.append(f"{response.status_code} {text!r}")
                    self.seen.append(der)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self._stop.wait(0.01)


def test_renewed_certificate_served_after_hup_with_no_failed_request(
    pki: PKI, app_dir: Path
) -> None:
    first = ssl.PEM_cert_to_DER_cert(pki.leaf_pem.decode())
    with start_dualcorn(*BASE, *tls_args(pki), "--workers", "2", cwd=app_dir) as server:
        url = f"https://127.0.0.1:{server.port}/"
        old = set(wait_serving(server, 2))
        with CertPoller(url, pki.client_context()) as poller:
            time.sleep(0.3)
            renewed = renew(pki)
            server.proc.send_signal(signal.SIGHUP)
            took = wait_for(lambda: renewed in poller.seen, 30, "the renewed certificate")
            # The whole rolling restart happens under the poller, not just its first step.
            wait_for(lambda: not old & live_workers(server), 30, "the old workers to leave")
            time.sleep(0.3)
        print(f"\nHUP: renewed certificate served after {took:.2f} s; {len(poller.seen)} "
              f"requests, {len(poller.failures)} failed")  # fmt: skip
        assert poller.failures == []
        assert poller.seen[0] == first and poller.seen[-1] == renewed
        # A new connection, from a fresh client, gets the new certificate too.
        with httpx.Client(verify=pki.client_context()) as client, client.stream("GET", url) as r:
            stream = r.extensions["network_stream"]
            assert stream.get_extra_info("ssl_object").getpeercert(True) == renewed
        assert server.stop(timeout=20) == 0


def test_renewed_certificate_served_after_a_reload(pki: PKI, app_dir: Path) -> None:
    with start_dualcorn(*BASE, *tls_args(pki), "--reload", cwd=app_dir) as server:
        url = f"https://127.0.0.1:{server.port}/"
        with CertPoller(url, pki.client_context()) as poller:
            renewed = renew(pki)
            (app_dir / "app.py").write_text(APP + "\n# edited\n")
            took = wait_for(lambda: renewed in poller.seen, 30, "the renewed certificate")
            # HUP reloads too: a renewal with no code change.
            again = renew(pki)
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: again in poller.seen, 30, "the certificate renewed again")
        print(f"\n--reload: renewed certificate served after {took:.2f} s; "
              f"{len(poller.failures)} failed requests")  # fmt: skip
        assert poller.failures == []
        assert server.stop(timeout=20) == 0


def test_wsgi_app_over_tls_with_workers(pki: PKI, tmp_path: Path) -> None:
    (tmp_path / "wsgiapp.py").write_text(
        "def app(environ, start_response):\n"
        "    body = (environ['wsgi.url_scheme'] + ' ' + environ.get('HTTPS', '-')).encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n"
    )
    args = ("wsgiapp:app", "--port", "0", "--workers", "2", *tls_args(pki))
    with start_dualcorn(*args, cwd=tmp_path) as server:
        url = f"https://127.0.0.1:{server.port}/"
        for _ in range(4):
            assert httpx.get(url, verify=pki.client_context()).text == "https on"
        assert server.stop(timeout=20) == 0
