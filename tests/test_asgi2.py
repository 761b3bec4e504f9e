"""ASGI2Adapter: the double call, driven with real receive/send channels."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dualcorn.adapters.asgi2 import ASGI2Adapter
from dualcorn.adapters.detect import detect_interface
from tests.apps.fw_asgi2_class import App as Asgi2App


async def run(app: ASGI2Adapter, scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in incoming:
        inbox.put_nowait(message)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, inbox.get, send)
    return sent


async def test_http_request_through_the_adapter() -> None:
    adapter = ASGI2Adapter(Asgi2App)
    sent = await run(adapter, {"type": "http"}, [{"type": "http.request", "body": b""}])
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"hello from asgi2"


async def test_lifespan_through_the_adapter() -> None:
    sent = await run(
        ASGI2Adapter(Asgi2App),
        {"type": "lifespan"},
        [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
    )
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


async def test_each_call_gets_its_own_instance_and_scope() -> None:
    scopes: list[object] = []

    def app(scope: dict[str, Any]) -> Any:
        async def instance(receive: Any, send: Any) -> None:
            scopes.append(scope)

        return instance

    adapter = ASGI2Adapter(app)
    first, second = {"type": "http", "n": 1}, {"type": "http", "n": 2}
    await run(adapter, first, [])
    await run(adapter, second, [])
    assert scopes == [first, second]
    assert scopes[0] is first


async def test_exceptions_pass_through_unchanged() -> None:
    class Boom(Exception):
        pass

    def app(scope: dict[str, Any]) -> Any:
        async def instance(receive: Any, send: Any) -> None:
            raise Boom("from the app")

        return instance

    with pytest.raises(Boom, match="from the app"):
        await run(ASGI2Adapter(app), {"type": "http"}, [])


def test_adapter_is_detected_as_asgi3() -> None:
    adapter = ASGI2Adapter(Asgi2App)
    assert detect_interface(adapter).interface == "asgi3"
    assert repr(adapter) == f"ASGI2Adapter({Asgi2App!r})"
