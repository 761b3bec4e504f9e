"""What the server may hand an app, said by the adapter that made it ASGI 3.

The protocols never ask which interface an app was written for (design rule 1): an adapter
that cannot take some scope, or that runs something the server must stop, says so here once,
and the server reads it once at start-up.  PEP 3333 has no WebSockets, so the WSGI adapter
takes none (an upgrade request reaches the app as the plain HTTP request it also is) and has a
thread pool to close; a router takes WebSockets when any app behind it does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

__all__ = ["ASGI_APP", "Capabilities", "capabilities"]


class Capabilities(NamedTuple):
    #: Upgrade requests may become ``websocket`` scopes (not for WSGI: PEP 3333 has none).
    websockets: bool = True
    #: Stops what the adapter runs (a WSGI thread pool) within a grace period in seconds;
    #: returns the requests it had to abandon.  None: nothing to stop.
    close: Callable[[float | None], Awaitable[list[str]]] | None = None


#: An ASGI 3 app served as it is: every scope, nothing of the server's to stop.
ASGI_APP = Capabilities()


def capabilities(app: Any) -> Capabilities:
    """``app``'s capabilities: an adapter or router tells (``dualcorn_capabilities``), any
    other ASGI 3 app gets :data:`ASGI_APP`.  Looked up on the type, so an app object's own
    ``__getattr__`` is never consulted."""
    method = getattr(type(app), "dualcorn_capabilities", None)
    return ASGI_APP if method is None else method(app)
