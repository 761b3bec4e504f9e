"""A sync function that returns the inner app's coroutine, as tracing wrappers do."""

from collections.abc import Awaitable
from typing import Any

from tests.apps.fw_starlette import app as starlette_app

calls = 0


def app(scope: Any, receive: Any, send: Any) -> Awaitable[None]:
    global calls
    calls += 1
    return starlette_app(scope, receive, send)
