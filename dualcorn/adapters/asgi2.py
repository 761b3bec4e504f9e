"""Serve an ASGI 2 ("double callable") application through dualcorn's one ASGI 3 seam.

ASGI 2 splits a call in two: ``instance = app(scope)`` builds a per-connection (or per-lifespan)
instance, then ``await instance(receive, send)`` runs it.  ASGI 3 merged the two into
``await app(scope, receive, send)``.  The adapter is that merge and nothing more: exceptions,
cancellation and the return value pass through untouched, so the protocol layer sees the same
errors it would from a native ASGI 3 app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ASGI2Adapter", "ASGI2Application", "ASGI2Instance"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI2Instance = Callable[[Receive, Send], Awaitable[None]]
ASGI2Application = Callable[[Scope], ASGI2Instance]


class ASGI2Adapter:
    """An ASGI 3 application that drives an ASGI 2 one: ``await app(scope)(receive, send)``."""

    __slots__ = ("app",)

    def __init__(self, app: ASGI2Application) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # ASGI spec, "Legacy Applications": a v2 application is a callable taking the scope
        # and returning a coroutine callable that takes receive and send.
        instance = self.app(scope)
        await instance(receive, send)

    def __repr__(self) -> str:
        return f"ASGI2Adapter({self.app!r})"
