"""Request ids: kept from a trusted proxy, made otherwise, seen by ASGI and WSGI apps, echoed.

Real servers on 127.0.0.1:0 (both loops, both parsers, and HTTP/2 by ``@over_both``) and real
clients; the test client is 127.0.0.1, which the default ``--forwarded-allow-ips`` trusts, so
"an untrusted client" is made by trusting some other address instead.  Over HTTP/2 the echoed
field's name is lowercase, as every HTTP/2 field name (RFC 9113 8.2.1).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from dualcorn.request_id import RequestIds, request_ids
from tests.conftest import over_both
from tests.support import ServerThread, http_client

HEX_ID = re.compile(r"[0-9a-f]{32}")


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    extension = scope["extensions"].get("dualcorn.request_id")
    header = [v.decode() for k, v in scope["headers"] if k == b"x-request-id"]
    body = json.dumps({"extension": extension, "header": header}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def fetch(protocol: str, url: str, **options: Any) -> httpx.Response:
    with http_client(protocol) as client:
        response = client.get(url, **options)
    assert response.http_version == ("HTTP/2" if protocol == "2" else "HTTP/1.1")
    return response


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = json.dumps(
        {"key": environ.get("dualcorn.request_id"), "header": environ.get("HTTP_X_REQUEST_ID")}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@over_both
def test_made_when_none_is_given_and_echoed(serve: Any, protocol: str) -> None:
    with serve(asgi_app, request_id_header="X-Request-ID") as server:
        first = fetch(protocol, f"{server.url}/")
        second = fetch(protocol, f"{server.url}/")
    seen = first.json()
    request_id = seen["extension"]["id"]
    assert HEX_ID.fullmatch(request_id)
    assert seen["header"] == [request_id]  # the app reads the same id in the header
    assert first.headers["x-request-id"] == request_id
    assert second.json()["extension"]["id"] != request_id


@over_both
def test_kept_from_a_trusted_proxy(serve: Any, protocol: str) -> None:
    with serve(asgi_app, request_id_header="X-Request-ID") as server:
        response = fetch(protocol, f"{server.url}/", headers={"x-request-id": "lb-1234"})
    assert response.json() == {"extension": {"id": "lb-1234"}, "header": ["lb-1234"]}
    assert response.headers["x-request-id"] == "lb-1234"


@over_both
def test_replaced_from_an_untrusted_client(serve: Any, protocol: str) -> None:
    options = {"request_id_header": "X-Request-ID", "forwarded_allow_ips": "10.9.9.9"}
    with serve(asgi_app, **options) as server:
        response = fetch(protocol, f"{server.url}/", headers={"x-request-id": "forged"})
    seen = response.json()
    assert seen["extension"]["id"] != "forged" and HEX_ID.fullmatch(seen["extension"]["id"])
    assert seen["header"] == [seen["extension"]["id"]]  # the forged header is gone
    assert response.headers["x-request-id"] == seen["extension"]["id"]


@over_both
@pytest.mark.parametrize("bad", ["a b", "x" * 201, "é"])
def test_an_unusable_id_is_replaced_even_from_a_trusted_proxy(
    serve: Any, protocol: str, bad: str
) -> None:
    with serve(asgi_app, request_id_header="X-Request-ID") as server:
        response = fetch(protocol, f"{server.url}/", headers={"x-request-id": bad.encode()})
    assert HEX_ID.fullmatch(response.json()["extension"]["id"])


@over_both
def test_echoed_on_a_500_too(serve: Any, protocol: str) -> None:
    with serve(asgi_app, request_id_header="X-Trace-Id") as server:
        response = fetch(protocol, f"{server.url}/boom", headers={"x-trace-id": "t-1"})
    assert response.status_code == 500
    assert response.headers["x-trace-id"] == "t-1"


@over_both
def test_in_the_wsgi_environ(serve: Any, protocol: str) -> None:
    options = {"interface": "wsgi", "request_id_header": "X-Request-ID"}
    with serve(wsgi_app, **options) as server:
        made = fetch(protocol, f"{server.url}/")
        kept = fetch(protocol, f"{server.url}/", headers={"x-request-id": "abc"})
    assert made.json()["key"] == made.json()["header"] == made.headers["x-request-id"]
    assert kept.json() == {"key": "abc", "header": "abc"}


@over_both
def test_nothing_is_done_unless_something_reads_the_id(serve: Any, protocol: str) -> None:
    with serve(asgi_app) as server:
        response = fetch(protocol, f"{server.url}/", headers={"x-request-id": "abc"})
    assert response.json() == {"extension": None, "header": ["abc"]}
    assert "x-request-id" not in response.headers


def test_when_ids_are_made() -> None:
    from dualcorn import Config

    def config(**options: Any) -> Config:
        return Config(app="m:a", **options)

    assert request_ids(config()) is None
    assert request_ids(config(access_log_format='%(h)s "%(r)s"')) is None
    assert isinstance(request_ids(config(request_id_header="X-Id")), RequestIds)
    assert isinstance(request_ids(config(log_format="json")), RequestIds)
    assert request_ids(config(log_format="json", access_log=False)) is None
    fmt = "%(h)s %({dualcorn.request_id}e)s"
    assert isinstance(request_ids(config(access_log_format=fmt)), RequestIds)


def test_the_header_name_is_checked() -> None:
    from dualcorn import Config
    from dualcorn.errors import ConfigError

    with pytest.raises(ConfigError, match="request_id_header"):
        Config(app="m:a", request_id_header="X Request")


def test_in_the_access_line() -> None:
    fmt = '%(h)s "%(r)s" %({dualcorn.request_id}e)s'
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("dualcorn.access")
    handler = Keep()
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with ServerThread(asgi_app, access_log_format=fmt) as server:
            httpx.get(f"{server.url}/", headers={"x-request-id": "r-77"}, timeout=10)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert [r.getMessage() for r in records] == ['127.0.0.1 "GET / HTTP/1.1" r-77']


# --- Behind a real nginx: its $request_id is the id everyone logs ---------------------------

NGINX_CONF = """
daemon off;
worker_processes 1;
user nobody nogroup;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format ids '$request_id $status';
    access_log {dir}/access.log ids;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header X-Request-ID $request_id;
        }}
    }}
}}
"""

APP_SOURCE = """
import json

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps(scope["extensions"]["dualcorn.request_id"]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


def test_behind_nginx_its_request_id_is_kept_everywhere() -> None:
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from tests.helpers import run_dualcorn
    from tests.test_proxy_e2e import free_port, running

    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.skip("nginx is not installed (Debian package nginx)")
    if os.geteuid() != 0:
        pytest.skip("nginx with 'user nobody' needs root")
    workdir = Path(tempfile.mkdtemp(prefix="dualcorn-rid-"))
    try:
        workdir.chmod(0o755)
        (workdir / "ridapp.py").write_text(APP_SOURCE)
        args = ("--port", "0", "--log-format", "json", "--request-id-header", "X-Request-ID",
                "ridapp:app")  # fmt: skip
        with run_dualcorn(*args, cwd=workdir) as server:
            port = free_port()
            conf = workdir / "nginx.conf"
            conf.write_text(NGINX_CONF.format(dir=workdir, port=port, upstream=server.port))
            with running([binary, "-p", str(workdir), "-c", str(conf)], port,
                         workdir / "error.log"):  # fmt: skip
                response = httpx.get(
                    f"http://127.0.0.1:{port}/x", headers={"x-request-id": "forged"}, timeout=20
                )
            assert server.stop() == 0
        request_id = response.json()["id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # nginx's, not the client's
        assert response.headers["x-request-id"] == request_id
        assert (workdir / "access.log").read_text().split() == [request_id, "200"]
        records = [json.loads(line) for line in server.stderr_text().splitlines()]
        (access,) = [r for r in records if r["logger"] == "dualcorn.access"]
        assert access["request_id"] == request_id
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def failing_wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    raise RuntimeError("boom")


@pytest.mark.parametrize(("app", "interface"), [(asgi_app, "asgi3"), (failing_wsgi_app, "wsgi")])
def test_an_app_error_carries_the_request_id(app: Any, interface: str) -> None:
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("dualcorn.error")
    handler = Keep(logging.ERROR)
    logger.addHandler(handler)
    try:
        options = {"interface": interface, "request_id_header": "X-Request-ID"}
        with ServerThread(app, **options) as server:
            response = httpx.get(f"{server.url}/boom", timeout=10)
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    (error,) = [r for r in records if "Exception in" in r.getMessage()]
    assert error.request_id == response.headers["x-request-id"]  # type: ignore[attr-defined]
