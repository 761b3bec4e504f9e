"""A real nginx, its workers running as an unprivileged user, proxying to ``dualcorn --uds``.

This is the deployment the Unix socket exists for: nginx's workers run as ``nobody`` (or
``www-data``), dualcorn as another user.  With dualcorn's default socket mode (0666, as
uvicorn's) nginx connects and the answer is 200; with ``--uds-mode 600`` it is refused, which
is nginx's 502 "Permission denied" that users met before.  The socket file is gone once
dualcorn exits.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import run_dualcorn

APP = "tests.apps.coretest_app:app"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def worker_user() -> tuple[str, str]:
    for name in ("nobody", "www-data"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return name, grp.getgrgid(user.pw_gid).gr_name
    pytest.skip("no unprivileged user (nobody, www-data) for nginx's workers")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # The directory's permissions are the access control: this one lets nginx's workers in.
    # (pytest's tmp_path lives under a 0700 directory that only root may enter.)
    path = Path(tempfile.mkdtemp(prefix="dualcorn-uds-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nginx(tmp_path: Path, socket_dir: Path) -> Iterator[str]:
    """nginx on 127.0.0.1:PORT proxying to socket_dir/app.sock; yields its base URL."""
    if NGINX is None:
        pytest.skip("nginx is not installed")
    if os.geteuid() != 0:
        pytest.skip("nginx must start as root to run its workers as another user")
    user, group = worker_user()
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
daemon off;
user {user} {group};
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path}/access.log;
    client_body_temp_path {tmp_path}/client_body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://unix:{socket_dir}/app.sock:;
            proxy_set_header Host $host;
        }}
    }}
}}
""")
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", f"{tmp_path}/error.log"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    assert proc.stderr is not None
                    pytest.fail(f"nginx did not start: {proc.stderr.read()}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_nginx_reaches_dualcorn_uds_with_default_settings(nginx: str, socket_dir: Path) -> None:
    path = socket_dir / "app.sock"
    with run_dualcorn("--uds", str(path), APP) as server:
        response = httpx.get(f"{nginx}/through-nginx", timeout=30)
        assert response.status_code == 200, response.text
        assert response.text == "GET /through-nginx"
        assert server.stop() == 0
    assert not path.exists(), "the socket file outlived dualcorn"


def test_a_private_socket_mode_keeps_nginx_out(nginx: str, socket_dir: Path) -> None:
    # The control case: the mode is what lets nginx in (its workers are not root).
    path = socket_dir / "app.sock"
    with run_dualcorn("--uds", str(path), "--uds-mode", "600", APP) as server:
        assert httpx.get(f"{nginx}/kept-out", timeout=30).status_code == 502
        assert server.stop() == 0
    assert not path.exists()
