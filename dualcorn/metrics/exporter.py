"""The ``/metrics`` listener: a socket of its own, one small HTTP/1.1 exchange per connection.

It is not the app's listener on purpose: metrics show request rates and paths a public client
has no business seeing, so they are reachable only where ``--metrics-host``/``--metrics-port``
put them (loopback by default), the way node_exporter or nginx's stub_status are set apart.

A scrape is one request: ``GET /metrics`` (or ``HEAD``) answered in the Prometheus text
exposition format, then the connection closes (RFC 9112 9.6 ``Connection: close``); Prometheus
opens a connection per scrape anyway.  The request head is bounded in size and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from dualcorn.errors import StartupError

__all__ = ["MetricsListener", "MetricsThread", "bind_metrics_socket"]

logger = logging.getLogger("dualcorn.error")

_HEAD_LIMIT = 16 * 1024  # a scrape's head is a few hundred bytes
_HEAD_TIMEOUT = 10.0  # seconds for the whole request head (nginx client_header_timeout: 60)
_WRITE_TIMEOUT = 30.0
# Scrapes served at once; more connections are closed at once (a scraper needs one or two).
_MAX_CONNECTIONS = 32


def bind_metrics_socket(host: str, port: int) -> socket.socket:
    """A listening socket for ``/metrics``; StartupError (exit 3) naming the option if not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise StartupError(f"--metrics-host {host}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"--metrics-port {port}: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.setblocking(False)
    return sock


def metrics_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/metrics"


class MetricsListener:
    """Serves ``render()`` at ``/metrics`` on ``sock`` from the running loop."""

    def __init__(self, sock: socket.socket, render: Callable[[], bytes]) -> None:
        self.sock = sock
        self.render = render
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self.sock,
                                                  limit=_HEAD_LIMIT)  # fmt: skip
        logger.info("Metrics on %s", metrics_url(self.sock))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(set(self._handlers))
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._handlers) >= _MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._handlers.add(task)
        try:
            response = await self._respond(reader)
            if not response:
                return
            writer.write(response)
            async with asyncio.timeout(_WRITE_TIMEOUT):
                await writer.drain()
        except (OSError, TimeoutError):
            pass  # the scraper went away or stalled: nothing to tell it
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> bytes:
        try:
            async with asyncio.timeout(_HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _response(431, b"request head too large\n")  # RFC 6585 5
        except asyncio.IncompleteReadError as exc:
            # The client stopped sending: a head cut short is malformed (RFC 9112 2.2).
            return _response(400, b"bad request\n") if exc.partial else b""
        except TimeoutError:
            return _response(408, b"")  # RFC 9110 15.5.9
        line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(line) != 3 or not line[2].startswith(b"HTTP/1."):
            return _response(400, b"bad request\n")
        method, target = line[0], line[1]
        if target.split(b"?", 1)[0] != b"/metrics":
            return _response(404, b"not found: metrics are at /metrics\n")
        if method not in (b"GET", b"HEAD"):
            # RFC 9110 15.5.6: 405 lists the allowed methods.
            return _response(405, b"method not allowed\n", extra=b"allow: GET, HEAD\r\n")
        try:
            body = self.render()
        except Exception:
            logger.exception("Could not render the metrics")
            return _response(500, b"metrics unavailable\n")
        return _response(200, body, content_type=CONTENT_TYPE_PLAIN_0_0_4.encode(),
                         head_only=method == b"HEAD")  # fmt: skip


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            408: b"Request Timeout", 431: b"Request Header Fields Too Large",
            500: b"Internal Server Error"}  # fmt: skip


def _response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: bytes = b"",
    head_only: bool = False,
) -> bytes:
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%sconnection: close\r\n\r\n"
        % (status, _REASONS[status], content_type, len(body), extra)
    )
    return head if head_only else head + body


def render_registry(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class MetricsThread:
    """A :class:`MetricsListener` on a loop of its own, for supervisors (which have no loop)."""

    def __init__(self, sock: socket.socket, render: Callable[[], bytes]) -> None:
        self.listener = MetricsListener(sock, render)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dualcorn-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10.0)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.listener.start()
        finally:
            self._started.set()
        try:
            await self._stop.wait()
        finally:
            await self.listener.close()

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10.0)
        self.listener.sock.close()
