"""--mount in one process: longest-prefix routing, root_path/SCRIPT_NAME, WebSockets, the log.

The HTTP cases run over HTTP/1.1 on each parser and over HTTP/2 (``@over_both``, h2c): the
router reads the same raw path from ``:path`` (RFC 9113 8.3.1) as from the request line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from dualcorn import Config
from dualcorn.errors import ConfigError
from dualcorn.mountspec import Mount
from tests.conftest import over_both
from tests.support import ServerThread, http_client, raw_exchange, status_of

pytestmark = pytest.mark.timeout(60)


def scope_app(name: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": f"{name}|{scope['root_path']}"})
            await send({"type": "websocket.close"})
            return
        seen = {key: scope[key] for key in ("root_path", "path")}
        seen["raw_path"] = scope["raw_path"].decode("latin-1")
        seen["app"] = name
        body = json.dumps(seen).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    seen = {
        "app": "wsgi",
        "root_path": environ["SCRIPT_NAME"],
        "path": environ["PATH_INFO"],
        "raw_path": environ.get("RAW_URI", ""),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


MOUNTS = (
    Mount("/api", scope_app("api"), "asgi3"),
    Mount("/api/v2", scope_app("v2"), "asgi3"),
    Mount("/legacy", wsgi_app, "wsgi", 2),
    Mount("/caf\u00e9", scope_app("cafe"), "asgi3"),
)

# target -> (app, root_path, path): ASGI path includes root_path; WSGI PATH_INFO does not.
ROUTES = {
    "/": ("main", "", "/"),
    "/api": ("api", "/api", "/api"),
    "/api/": ("api", "/api", "/api/"),
    "/api/x": ("api", "/api", "/api/x"),
    "/apix": ("main", "", "/apix"),  # whole segments only
    "/api/v2": ("v2", "/api/v2", "/api/v2"),  # the longest prefix wins
    "/api/v2/users": ("v2", "/api/v2", "/api/v2/users"),
    "/api/v22": ("api", "/api", "/api/v22"),
    "/api%2Fv2/x": ("main", "", "/api/v2/x"),  # an encoded slash crosses no mount boundary
    "/api/v2%2fx": ("api", "/api", "/api/v2/x"),
    "/%61pi/x": ("api", "/api", "/api/x"),  # segments are compared decoded
    "/caf%C3%A9/menu": ("cafe", "/caf\u00e9", "/caf\u00e9/menu"),
    "/legacy": ("wsgi", "/legacy", ""),
    "/legacy/a/b": ("wsgi", "/legacy", "/a/b"),
    "/legacy/a%2Fb": ("wsgi", "/legacy", "/a/b"),
    "/legacyx": ("main", "", "/legacyx"),
}


@pytest.fixture
def mounted(serve: Callable[..., ServerThread], protocol: str) -> Iterator[httpx.Client]:
    server = serve(scope_app("main"), mounts=MOUNTS).__enter__()  # the fixture closes it
    with http_client(protocol, base_url=server.url) as client:
        yield client


@over_both
@pytest.mark.parametrize(("target", "expected"), ROUTES.items())
def test_longest_prefix_on_segments(
    mounted: httpx.Client, target: str, expected: tuple[str, str, str]
) -> None:
    seen = mounted.get(httpx.URL(str(mounted.base_url) + target)).json()
    assert (seen["app"], seen["root_path"], seen["path"]) == expected
    if seen["app"] != "wsgi":
        assert seen["raw_path"] == target  # the bytes the client sent, at every level


@over_both
def test_root_path_option_comes_first(serve: Callable[..., ServerThread], protocol: str) -> None:
    with (
        serve(scope_app("main"), mounts=MOUNTS, root_path="/proxy") as server,
        http_client(protocol, base_url=server.url) as client,
    ):
        assert client.get("/api/x").json() == {
            "app": "api", "root_path": "/proxy/api", "path": "/proxy/api/x", "raw_path": "/api/x",
        }  # fmt: skip
        legacy = client.get("/legacy/y").json()
        assert (legacy["root_path"], legacy["path"]) == ("/proxy/legacy", "/y")


def test_websocket_on_an_asgi_mount(serve: Callable[..., ServerThread]) -> None:
    with serve(scope_app("main"), mounts=MOUNTS) as server:
        ws_url = server.url.replace("http://", "ws://")
        with connect(ws_url + "/api/v2/socket", open_timeout=10) as ws:
            assert ws.recv(timeout=10) == "v2|/api/v2"
        with connect(ws_url + "/socket", open_timeout=10) as ws:
            assert ws.recv(timeout=10) == "main|"
        # PEP 3333 has no WebSockets: the WSGI mount refuses the handshake.
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url + "/legacy/socket", open_timeout=10)
        assert refused.value.response.status_code == 403


def test_access_log_names_the_mount(
    serve: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("dualcorn.access")
    propagate, logger.propagate = logger.propagate, True
    caplog.set_level(logging.INFO, logger="dualcorn.access")
    try:
        with serve(scope_app("main"), mounts=MOUNTS) as server:
            for target in ("/api/x", "/legacy/y", "/z"):
                raw = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                assert status_of(raw_exchange(server.port, raw.encode())) == 200
            with connect(server.url.replace("http://", "ws://") + "/api/ws", open_timeout=10) as ws:
                ws.recv(timeout=10)
            with http_client("2", base_url=server.url) as h2c:
                assert h2c.get("/api/h2").status_code == 200
    finally:
        logger.propagate = propagate
    lines = [r.getMessage() for r in caplog.records if r.name == "dualcorn.access"]
    assert any('"GET /api/x HTTP/1.1" 200' in line for line in lines)
    assert any("/api/x" in line and line.endswith("mount=/api") for line in lines)
    assert any("/legacy/y" in line and line.endswith("mount=/legacy") for line in lines)
    assert any("/z HTTP" in line and line.endswith("mount=/") for line in lines)
    assert any("WebSocket /api/ws" in line and line.endswith("mount=/api") for line in lines)
    assert any('"GET /api/h2 HTTP/2.0" 200' in line and line.endswith("mount=/api")
               for line in lines)  # fmt: skip


@over_both
def test_lifespan_state_is_per_mount(serve: Callable[..., ServerThread], protocol: str) -> None:
    def lifespan_app(name: str) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await receive()
                scope["state"]["who"] = name
                await send({"type": "lifespan.startup.complete"})
                await receive()
                await send({"type": "lifespan.shutdown.complete"})
                return
            body = scope["state"]["who"].encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

        return app

    mounts = (Mount("/a", lifespan_app("a"), "asgi3"),)
    with (
        serve(lifespan_app("main"), mounts=mounts, lifespan="on") as server,
        http_client(protocol, base_url=server.url) as client,
    ):
        assert client.get("/a/x").text == "a"
        assert client.get("/b").text == "main"


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ("api=m:app", "must start with '/'"),
        ("/=m:app", "main APP"),
        ("/a/../b=m:app", "'..'"),
        ("/a%2Fb=m:app", "decoded"),
        ("/a=m:app@cgi", "interface"),
        ("/a=m:app@wsgi:zero", "threads"),
        ("/a=m:app@wsgi:0", "at least 1"),
        ("/a", "PATH=APP"),
    ],
)
def test_bad_mounts_are_config_errors(mount: str, message: str) -> None:
    with pytest.raises(ConfigError, match="mount") as error:
        Config(app="m:app", mounts=(mount,))
    assert message in str(error.value)


def test_mount_forms() -> None:
    config = Config(app="m:app", mounts=("/a/=x:app", "/b=y:app@wsgi", "/c=z:app@wsgi:8"))
    assert config.mounts == (
        Mount("/a", "x:app"),
        Mount("/b", "y:app", "wsgi"),
        Mount("/c", "z:app", "wsgi", 8),
    )
    tables = Config(app="m:app", mounts=({"path": "/t", "app": "t:app", "threads": 2},))
    assert tables.mounts == (Mount("/t", "t:app", "auto", 2),)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        Config(app="m:app", mounts=({"path": "/t", "ap": "t:app"},))
    with pytest.raises(ConfigError, match="twice"):
        Config(app="m:app", mounts=("/a=x:app", "/a/=y:app"))
    with pytest.raises(ConfigError, match="not a directory"):
        Config(app="m:app", static=("/s=/nonexistent/dir",))


def test_mounts_and_static_from_the_command_line_and_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dualcorn.cli import config_from_args
    from dualcorn.mountspec import StaticDir

    config = config_from_args(
        ["m:app", "--mount", "/a=x:app", "--mount", "/b=y:app@wsgi:3",
         "--static", f"/s={tmp_path}", "--static-max-age", "60", "--static-fallthrough"]
    )  # fmt: skip
    assert config.mounts == (Mount("/a", "x:app"), Mount("/b", "y:app", "wsgi", 3))
    assert config.static == (StaticDir("/s", str(tmp_path)),)
    assert (config.static_max_age, config.static_fallthrough, config.static_index) == (
        60, True, False,
    )  # fmt: skip
    monkeypatch.setenv("DUALCORN_MOUNT", "/c=z:app,/d=w:app@asgi2")
    monkeypatch.setenv("DUALCORN_STATIC_INDEX", "true")
    config = config_from_args(["m:app"])
    assert [m.path for m in config.mounts] == ["/c", "/d"] and config.static_index


def test_websocket_to_a_static_directory_is_refused(
    serve: Callable[..., ServerThread], tmp_path: Any
) -> None:
    with serve(scope_app("main"), static=(f"/static={tmp_path}",)) as server:
        ws_url = server.url.replace("http://", "ws://")
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url + "/static/socket", open_timeout=10)
        assert refused.value.response.status_code == 403
        with connect(ws_url + "/elsewhere", open_timeout=10) as ws:  # the app still has its own
            assert ws.recv(timeout=10) == "main|"
