"""docs/deployment.md is tested where it can be: systemd units, nginx, every command line.

Each checked file in the document is a fenced block right after a ``<!-- kind: name -->``
comment; the tests take the blocks from the document itself, so the docs cannot drift.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from dualcorn.cli import config_from_args
from dualcorn.config import Config
from tests.helpers import REPO_ROOT, run_dualcorn
from tests.platform_support import free_port
from tests.supervising import wait_for

DOC = REPO_ROOT / "docs" / "deployment.md"
BLOCK = re.compile(r"<!-- (\w+): ([^ ]+?)(?: [^>]*)? -->\n```\w*\n(.*?)```", re.S)


def blocks() -> dict[str, str]:
    return {name: body for _, name, body in BLOCK.findall(DOC.read_text())}


def unit_setting(unit: str, key: str) -> str:
    text = blocks()[unit].replace("\\\n", " ")  # systemd.syntax(7): a trailing \ continues
    found = re.search(rf"^{key}=(.*)$", text, re.M)
    assert found, f"{unit} has no {key}="
    return found.group(1)


def dualcorn_config(argv: list[str]) -> Config:
    assert Path(argv[0]).name == "dualcorn", argv
    return config_from_args(argv[1:])


def test_the_readme_links_the_deployment_doc() -> None:
    assert "(docs/deployment.md)" in (REPO_ROOT / "README.md").read_text()
    assert {"nginx.conf", "dualcorn.socket", "dualcorn.service", "Dockerfile",
            "deployment.yaml"} <= set(blocks())  # fmt: skip


def test_every_command_line_is_valid_dualcorn_options() -> None:
    service = dualcorn_config(shlex.split(unit_setting("dualcorn.service", "ExecStart")))
    assert service.workers == 4
    docker = re.search(r"^CMD (\[.*\])$", blocks()["Dockerfile"], re.M)
    assert docker is not None
    assert dualcorn_config(json.loads(docker.group(1))).host == "0.0.0.0"
    container = yaml.safe_load(blocks()["deployment.yaml"])["spec"]["template"]["spec"]
    main = container["containers"][0]
    kube = dualcorn_config(main["command"] + main["args"])
    assert kube.shutdown_delay > 0


def test_stop_timeouts_cover_the_drain_and_the_graceful_shutdown() -> None:
    pod = yaml.safe_load(blocks()["deployment.yaml"])["spec"]["template"]["spec"]
    main = pod["containers"][0]
    kube = dualcorn_config(main["command"] + main["args"])
    assert kube.timeout_graceful_shutdown is not None
    assert pod["terminationGracePeriodSeconds"] >= kube.shutdown_delay + \
        kube.timeout_graceful_shutdown  # fmt: skip
    service = dualcorn_config(shlex.split(unit_setting("dualcorn.service", "ExecStart")))
    assert service.timeout_graceful_shutdown is not None
    stop = float(unit_setting("dualcorn.service", "TimeoutStopSec"))
    assert stop >= service.shutdown_delay + service.timeout_graceful_shutdown


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    command = Path(sys.executable).parent / "dualcorn"
    if not command.exists():
        pytest.skip("no dualcorn script next to this Python to stand in for /srv/app/.venv")
    for name in ("dualcorn.socket", "dualcorn.service"):
        text = blocks()[name].replace("/srv/app/.venv/bin/dualcorn", str(command))
        (tmp_path / name).write_text(text.replace("/srv/app", str(tmp_path)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", "dualcorn.socket", "dualcorn.service"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # systemd ignores unknown keys and bad values with only a warning: those fail here.
    assert not re.search(r"Unknown|ignoring|Failed|not executable|Invalid", output), output


def test_the_nginx_config_proxies_to_dualcorn(tmp_path: Path) -> None:
    nginx, openssl = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("openssl")
    if not os.path.exists(nginx) or openssl is None:
        pytest.skip("nginx and openssl are needed (Debian packages nginx, openssl)")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=example.com", "-keyout", str(tmp_path / "key.pem"), "-out",
         str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    sock = tmp_path / "d.sock"
    plain, tls = free_port(), free_port()
    site = (
        blocks()["nginx.conf"]
        .replace("/run/dualcorn/dualcorn.sock", str(sock))
        .replace("/etc/ssl/example.com/fullchain.pem", str(tmp_path / "cert.pem"))
        .replace("/etc/ssl/example.com/privkey.pem", str(tmp_path / "key.pem"))
        .replace("listen 80;", f"listen 127.0.0.1:{plain};")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{tls} ssl;")
    )
    temp = "".join(f"{kind}_temp_path {tmp_path}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    conf = tmp_path / "nginx.conf"
    # As root, nginx's workers would run as nobody: the socket (0660) and the temp directory
    # are root's.  In production its user is in the socket's group (see the doc).
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp}{site}\n}}\n"
    )
    check = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stderr
    # The service unit's trust setting (nginx is a peer on the Unix socket), as the doc says.
    argv = shlex.split(unit_setting("dualcorn.service", "ExecStart"))
    trust = ("--forwarded-allow-ips", argv[argv.index("--forwarded-allow-ips") + 1])
    with run_dualcorn("tests.apps.platform_app:app", "--uds", str(sock), *trust):
        proc = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        try:
            with httpx.Client(verify=False, timeout=30) as client:

                def answering() -> bool:
                    try:
                        client.get(f"https://127.0.0.1:{tls}/")
                    except httpx.TransportError:
                        return False
                    return True

                wait_for(answering, 30, "nginx to listen")
                redirect = client.get(f"http://127.0.0.1:{plain}/x", headers={"host": "a.test"})
                assert redirect.status_code == 301
                assert redirect.headers["location"] == "https://a.test/x"
                seen = client.get(f"https://127.0.0.1:{tls}/headers").json()
                scope = client.get(f"https://127.0.0.1:{tls}/scope").json()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    # What the doc's proxy_set_header lines tell dualcorn.
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-port"] == str(tls)
    # X-Forwarded-Host and -Port rebuild the host the client asked for (README, proxies).
    assert seen["host"] == f"127.0.0.1:{tls}"
    # ...and what the app then sees: the client's scheme and address, not the proxy's socket.
    assert scope["scheme"] == "https"
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", tls]
