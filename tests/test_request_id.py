"""Request ids: kept from a trusted proxy, made otherwise, seen by ASGI and WSGI apps, echoed.

Real servers on 127.0.0.1:0 (both loops, both parsers) and real clients; the test client is
127.0.0.1, which the default ``--forwarded-allow-ips`` trusts, so "an untrusted client" is made
by trusting some other address instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from dualcorn.request_id import RequestIds, request_ids
from tests.support import ServerThread

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


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = json.dumps(
        {"key": environ.get("dualcorn.request_id"), "header": environ.get("HTTP_X_REQUEST_ID")}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def test_made_when_none_is_given_and_echoed(serve: Any) -> None:
    with serve(asgi_app, request_id_header="X-Request-ID") as server:
        first = httpx.get(f"{server.url}/", timeout=10)
        second = httpx.get(f"{server.url}/", timeout=10)
    seen = first.json()
    request_id = seen["extension"]["id"]
    assert HEX_ID.fullmatch(request_id)
    assert seen["header"] == [request_id]  # the app reads the same id in the header
    assert first.headers["x-request-id"] == request_id
    assert second.json()["extension"]["id"] != request_id


def test_kept_from_a_trusted_proxy(serve: Any) -> None:
    with serve(asgi_app, request_id_header="X-Request-ID") as server:
        response = httpx.get(f"{server.url}/", headers={"x-request-id": "lb-1234"}, timeout=10)
    assert response.json() == {"extension": {"id": "lb-1234"}, "header": ["lb-1234"]}
    assert response.headers["x-request-id"] == "lb-1234"


def test_replaced_from_an_untrusted_client(serve: Any) -> None:
    options = {"request_id_header": "X-Request-ID", "forwarded_allow_ips": "10.9.9.9"}
    with serve(asgi_app, **options) as server:
        response = httpx.get(f"{server.url}/", headers={"x-request-id": "forged"}, timeout=10)
    seen = response.json()
    assert seen["extension"]["id"] != "forged" and HEX_ID.fullmatch(seen["extension"]["id"])
    assert seen["header"] == [seen["extension"]["id"]]  # the forged header is gone
    assert response.headers["x-request-id"] == seen["extension"]["id"]


@pytest.mark.parametrize("bad", ["a b", "x" * 201, "é"])
def test_an_unusable_id_is_replaced_even_from_a_trusted_proxy(serve: Any, bad: str) -> None:
    with serve(asgi_app, request_id_header="X-Request-ID") as server:
        response = httpx.get(f"{server.url}/", headers={"x-request-id": bad.encode()}, timeout=10)
    assert HEX_ID.fullmatch(response.json()["extension"]["id"])


def test_echoed_on_a_500_too(serve: Any) -> None:
    with serve(asgi_app, request_id_header="X-Trace-Id") as server:
        response = httpx.get(f"{server.url}/boom", headers={"x-trace-id": "t-1"}, timeout=10)
    assert response.status_code == 500
    assert response.headers["x-trace-id"] == "t-1"


def test_in_the_wsgi_environ(serve: Any) -> None:
    options = {"interface": "wsgi", "request_id_header": "X-Request-ID"}
    with serve(wsgi_app, **options) as server:
        made = httpx.get(f"{server.url}/", timeout=10)
        kept = httpx.get(f"{server.url}/", headers={"x-request-id": "abc"}, timeout=10)
    assert made.json()["key"] == made.json()["header"] == made.headers["x-request-id"]
    assert kept.json() == {"key": "abc", "header": "abc"}


def test_nothing_is_done_unless_something_reads_the_id(serve: Any) -> None:
    with serve(asgi_app) as server:
        response = httpx.get(f"{server.url}/", headers={"x-request-id": "abc"}, timeout=10)
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
