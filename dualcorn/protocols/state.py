"""State shared by every connection of one server: live connections, tasks, precomputed bytes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dualcorn import __version__
from dualcorn.access_format import compile_format
from dualcorn.adapters.capabilities import Capabilities, capabilities
from dualcorn.config import Config
from dualcorn.listener import Throttled
from dualcorn.protocols.logline import AccessLogger
from dualcorn.protocols.websocket.handshake import websocket_support
from dualcorn.protocols.writer import DateHeader
from dualcorn.proxies import proxy_headers
from dualcorn.request_id import request_ids

__all__ = ["Connection", "ServerState"]


class Connection:
    """What the server needs of every protocol object to shut down gracefully."""

    # WebSocket sessions: the server shuts them down only after HTTP requests in flight end.
    long_lived = False

    def shutdown(self) -> None:
        """Close now if idle; otherwise close after the response in flight."""
        raise NotImplementedError

    async def wait_closed(self) -> None:
        """Return once a long-lived connection has closed after :meth:`shutdown`.

        Cancelling the wait gives up on it: the connection aborts and cancels its app.
        """


class ServerState:
    """One per server process; read on the hot path, so values are computed once."""

    def __init__(self, config: Config, app: Any, offers: Capabilities | None = None) -> None:
        self.config = config
        self.app = app
        # What the adapter that made the app ASGI 3 says it takes (design rule 1: the protocols
        # never ask whether the app was WSGI).
        self.offers = capabilities(app) if offers is None else offers
        # Upgrade requests become WebSocket sessions (not with --ws none, nor for an app that
        # takes no websocket scope: a WSGI app).
        self.websockets = websocket_support(config, self.offers.websockets)
        # --ws auto for an app that takes WebSockets, but the websockets package is not
        # installed: upgrade requests are answered 501 (see HTTPConnection.upgrade_websocket),
        # not given to the app.
        self.websockets_missing = (
            not self.websockets and config.ws != "none" and self.offers.websockets
        )
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        # The apps of open WebSocket sessions: they count toward --limit-concurrency too.
        self.ws_tasks: set[asyncio.Task[None]] = set()
        self._refused = Throttled(
            f"--limit-connections ({config.limit_connections}) reached: closed %d new connection(s)"
        )
        self.total_requests = 0
        self.stopping = False
        # --shutdown-delay: still accepting and serving, but no connection is kept alive.
        self.draining = False
        # Set by the lifespan startup: a copy of it goes into every request scope.
        self.lifespan_state: dict[str, Any] = {}
        self.date = DateHeader() if config.date_header else None
        head = b""
        if config.server_header:
            head += b"server: dualcorn\r\n"
        for name, value in config.headers:
            head += f"{name}: {value}\r\n".encode("latin-1")
        # Pre-encoded default response headers: written after the status line of every
        # response whose app did not set the same names itself.
        self.default_head = head
        self.default_names = frozenset(
            ([b"server"] if config.server_header else [])
            + [name.lower().encode("latin-1") for name, _ in config.headers]
        )
        # Checked HTTP/1.1 response header lines by (name, value): see writer.classify_field.
        self.header_lines: dict[tuple[bytes, bytes], tuple[int, bytes]] = {}
        # Direct writes for dualcorn's own access handler, logging for any other set-up.
        self.access_logger = AccessLogger(logging.getLogger("dualcorn.access"))
        self.error_logger = logging.getLogger("dualcorn.error")
        self.server_software = f"dualcorn/{__version__}"
        # Forwarding headers, for connections whose peer --forwarded-allow-ips trusts.
        self.proxy_headers = proxy_headers(config)
        # --access-log-format, compiled once; request ids when something reads them (issue #14).
        self.access_format = compile_format(config.access_log_format)
        self.request_ids = request_ids(config)
        # Called after every completed request (max-requests accounting by supervisors).
        self.on_request_done: list[Any] = []
        # --metrics-port: a dualcorn.metrics.recorder.ServerMetrics; None costs a request nothing.
        self.metrics: Any = None

    def at_connection_limit(self) -> bool:
        """Whether a new connection must be closed at once (nginx worker_connections)."""
        limit = self.config.limit_connections
        if limit is None or len(self.connections) < limit:
            return False
        self._refused()
        return True

    def at_concurrency_limit(self) -> bool:
        """Whether a new request or WebSocket must be refused with 503 (--limit-concurrency)."""
        limit = self.config.limit_concurrency
        return limit is not None and len(self.tasks) + len(self.ws_tasks) >= limit

    @property
    def access_log(self) -> bool:
        return self.config.access_log and self.access_logger.isEnabledFor(logging.INFO)
