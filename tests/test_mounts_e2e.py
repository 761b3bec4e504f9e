"""The must-show, as a user runs it: one ``dualcorn`` command, FastAPI at /, Flask at /legacy,
Django (WSGI) at /admin-old, static files at /static; links from each framework's url_for;
a WebSocket on the FastAPI mount; the same under ``--workers 2``.  And lifespans per mount.

The HTTP requests go over HTTP/1.1 and then over HTTP/2 (httpx ``http2=True``, h2c) to the same
server process: the mounts see one scope whichever protocol carried it (``Host`` from
``:authority``, RFC 9113 8.3.1, so every url_for link is the same).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.helpers import REPO_ROOT, child_env, run_dualcorn
from tests.supervising import wait_for

pytestmark = pytest.mark.timeout(120)

CSS = b"body { color: rgb(1, 2, 3); }\n"


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    (tmp_path / "site.css").write_bytes(CSS)
    return tmp_path


@pytest.mark.parametrize("workers", ["1", "2"])
def test_fastapi_flask_django_and_static_on_one_port(static_dir: Path, workers: str) -> None:
    args = (
        "tests.apps.mount_fastapi:app", "--port", "0", "--workers", workers,
        "--mount", "/legacy=tests.apps.mount_flask:app",
        "--mount", "/admin-old=tests.apps.mount_django:app@wsgi:4",
        "--static", f"/static={static_dir}",
    )  # fmt: skip
    with run_dualcorn(*args) as server:
        base = server.url
        for h2 in (False, True):
            client = httpx.Client(base_url=base, http1=not h2, http2=h2, timeout=10)
            with client:
                assert client.get("/").http_version == ("HTTP/2" if h2 else "HTTP/1.1")
                root = client.get("/").json()
                assert root == {
                    "self": f"{base}/", "item": f"{base}/items/7", "root_path": "",
                    "state": "fastapi",
                }  # fmt: skip
                item = client.get("/items/7").json()
                assert item == {"item": 7, "path": "/items/7", "root_path": ""}

                legacy = client.get("/legacy/").json()
                assert legacy["self"] == f"{base}/legacy/"
                assert legacy["page"] == "/legacy/page/x"
                assert (legacy["script_name"], legacy["path_info"]) == ("/legacy", "/")
                page = client.get(legacy["page"]).json()
                assert page == {"page": "x", "self": f"{base}/legacy/page/x"}

                django = client.get("/admin-old/").json()
                assert django["self"] == f"{base}/admin-old/"
                assert django["page"] == "/admin-old/page/x"
                assert (django["script_name"], django["path_info"]) == ("/admin-old", "/")
                assert client.get(django["page"]).json() == {
                    "page": "x",
                    "path": "/admin-old/page/x",
                }

                css = client.get("/static/site.css")
                assert css.content == CSS and css.headers["content-type"].startswith("text/css")
                assert client.get("/static/missing.css").status_code == 404
                assert client.get("/legacyx").status_code == 404  # FastAPI's 404, not Flask's

        with connect(base.replace("http://", "ws://") + "/ws", open_timeout=10) as ws:
            ws.send("hi")
            assert ws.recv(timeout=10) == f"|{base.replace('http://', 'ws://')}/ws|hi"
        code = server.stop(timeout=30)
        assert code == 0, server.stderr_text()
    log = server.stderr_text()
    assert "mounted at /legacy" in log and "mounted at /admin-old" in log
    assert "mount=/legacy" in log and "mount=static:/static" in log


def test_lifespans_start_in_order_and_stop_in_reverse(tmp_path: Path) -> None:
    record = tmp_path / "lifespans.log"
    args = (
        "tests.apps.mount_lifespans:main", "--port", "0", "--lifespan", "on",
        "--mount", "/first=tests.apps.mount_lifespans:first",
        "--mount", "/second=tests.apps.mount_lifespans:second",
        "--mount", "/flask=tests.apps.mount_flask:app",
    )  # fmt: skip
    with run_dualcorn(*args, env={"MOUNT_LIFESPAN_LOG": str(record)}) as server:
        assert httpx.get(server.url + "/second/x", timeout=10).text == "second|/second|/second/x"
        assert server.stop(timeout=30) == 0, server.stderr_text()
    assert record.read_text().split("\n")[:-1] == [
        "startup main", "startup first", "startup second",
        "shutdown second", "shutdown first", "shutdown main",
    ]  # fmt: skip


def test_a_failing_mount_startup_stops_the_server_with_status_3(tmp_path: Path) -> None:
    record = tmp_path / "lifespans.log"
    command = [
        sys.executable, "-m", "dualcorn", "tests.apps.mount_lifespans:main", "--port", "0",
        "--mount", "/first=tests.apps.mount_lifespans:first",
        "--mount", "/bad=tests.apps.mount_lifespans:failing",
        "--mount", "/never=tests.apps.mount_lifespans:second",
    ]  # fmt: skip
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=child_env({"MOUNT_LIFESPAN_LOG": str(record)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert "mount /bad" in done.stderr and "no database" in done.stderr
    assert "running on" not in done.stderr  # it never listened
    assert record.read_text().split("\n")[:-1] == [
        "startup main", "startup first", "startup failing", "shutdown first", "shutdown main",
    ]  # fmt: skip


def test_reload_watches_a_mounted_app_outside_the_current_directory(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "other_app.py").write_text(_RAW_APP.format(text="v1"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "main_app.py").write_text(_RAW_APP.format(text="main"))
    env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(elsewhere)])}
    args = ("main_app:app", "--port", "0", "--reload", "--mount", "/other=other_app:app")
    with run_dualcorn(*args, cwd=project, env=env) as server:
        # "Will watch for changes in: ..." follows the address line.
        wait_for(lambda: "Will watch" in server.stderr_text(), 20, "the watch list")
        assert str(elsewhere) in server.stderr_text()
        assert httpx.get(server.url + "/other/", timeout=10).text == "v1"
        (elsewhere / "other_app.py").write_text(_RAW_APP.format(text="v2"))
        _wait_for_text(server.url + "/other/", "v2")
        server.proc.send_signal(signal.SIGINT)
        server.proc.wait(timeout=30)


_RAW_APP = """
async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{text}"}})
"""


def _wait_for_text(url: str, text: str, timeout: float = 30.0) -> None:
    def answers() -> bool:
        try:
            return httpx.get(url, timeout=5).text == text
        except httpx.HTTPError:
            return False  # between two server processes

    wait_for(answers, timeout, f"{url} to answer {text!r}")
