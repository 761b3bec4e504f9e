"""Every supported framework, served by the ``dualcorn`` command exactly as a user runs it.

Each case starts ``python -m dualcorn tests.apps.fw_X:app --interface auto --port 0``, waits
for the "running on" line, GETs ``/`` over a real socket, with HTTP/1.1 and then with HTTP/2
(httpx ``http2=True``, h2c with prior knowledge: the command serves both on one port by
default), checks the start-up log named the interface detection chose, then presses Ctrl+C
(SIGINT) and expects a clean exit.  Both protocols share one server process: a second start per
framework would double the file's time for nothing the second GET does not already prove.
"""

from __future__ import annotations

import httpx
import pytest

from dualcorn.adapters.detect import InterfaceName, describe
from tests.helpers import run_dualcorn

# (import string, interface the log must name, body GET / must return)
CASES: list[tuple[str, InterfaceName, bytes]] = [
    ("tests.apps.fw_fastapi:app", "asgi3", b"hello from fastapi"),
    ("tests.apps.fw_starlette:app", "asgi3", b"hello from starlette"),
    ("tests.apps.fw_starlette_router:app", "asgi3", b"hello from starlette router"),
    ("tests.apps.fw_starlette_gzip:app", "asgi3", b"hello from starlette"),
    ("tests.apps.fw_litestar:app", "asgi3", b"hello from litestar"),
    ("tests.apps.fw_quart:app", "asgi3", b"hello from quart"),
    ("tests.apps.fw_quart_asgi_app:app", "asgi3", b"hello from quart"),
    ("tests.apps.fw_django_asgi:app", "asgi3", b"hello from django"),
    ("tests.apps.fw_django_wsgi:app", "wsgi", b"hello from django"),
    ("tests.apps.fw_channels:app", "asgi3", b"hello from channels"),
    ("tests.apps.fw_falcon_wsgi:app", "wsgi", b"hello from falcon"),
    ("tests.apps.fw_falcon_asgi:app", "asgi3", b"hello from falcon asgi"),
    ("tests.apps.fw_flask:app", "wsgi", b"hello from flask"),
    ("tests.apps.fw_flask_wsgi_app:app", "wsgi", b"hello from flask"),
    ("tests.apps.fw_flask_proxyfix:app", "wsgi", b"hello from flask"),
    ("tests.apps.fw_bottle:app", "wsgi", b"hello from bottle"),
    ("tests.apps.fw_pyramid:app", "wsgi", b"hello from pyramid"),
    ("tests.apps.fw_asgiref_wsgitoasgi:app", "asgi3", b"hello from asgiref wsgitoasgi"),
    ("tests.apps.fw_a2wsgi:app", "wsgi", b"hello from a2wsgi"),
    ("tests.apps.fw_asgi2_class:app", "asgi2", b"hello from asgi2"),
    ("tests.apps.fw_instrumented:app", "asgi3", b"hello from starlette"),
    # The examples, as their docstrings tell users to run them.  asgi_raw's greeting is set by
    # its lifespan startup handler, so its body also proves lifespan ran.
    ("examples.asgi_raw:app", "asgi3", b"hello from raw asgi"),
    ("examples.wsgi_raw:app", "wsgi", b"hello from raw wsgi"),
    ("examples.fastapi_app:app", "asgi3", b"hello from fastapi"),
    ("examples.starlette_app:app", "asgi3", b"hello from starlette"),
    ("examples.flask_app:app", "wsgi", b"hello from flask"),
    ("examples.django_asgi:app", "asgi3", b"hello from django asgi"),
    ("examples.django_wsgi:app", "wsgi", b"hello from django wsgi"),
]


@pytest.mark.parametrize(
    ("target", "interface", "body"), CASES, ids=[case[0].split(":")[0] for case in CASES]
)
def test_served_by_the_dualcorn_command(target: str, interface: InterfaceName, body: bytes) -> None:
    args = (target, "--interface", "auto", "--port", "0", "--log-level", "info")
    with run_dualcorn(*args) as server:
        response = httpx.get(f"{server.url}/", timeout=10)
        assert response.status_code == 200, server.stderr_text()
        assert response.content == body
        with httpx.Client(http1=False, http2=True, timeout=10) as h2c:
            response = h2c.get(f"{server.url}/")
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200, server.stderr_text()
        assert response.content == body
        assert describe(interface) in server.stderr_text()
        code = server.stop(timeout=10)
        assert code == 0, server.stderr_text()
