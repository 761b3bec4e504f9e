"""Serve a WSGI application as an ASGI 3 application (PEP 3333 in a bounded thread pool).

Theory of operation
-------------------
The server only ever speaks ASGI 3 (design rule 1), so a WSGI app is wrapped in
:class:`WSGIAdapter`, itself an ASGI 3 application:

* ``lifespan``: the adapter answers the protocol itself (WSGI apps have no startup or shutdown
  hooks).  Startup creates the thread pool; shutdown waits for the app threads and stops it.
  With ``--lifespan off`` the pool is created by the first request.
* ``http``: the request becomes a PEP 3333 environ (:class:`EnvironBuilder`), and a
  :class:`~.wsgi_responder.Responder` runs the application in one pool thread.  The request body
  reaches the thread through :class:`~.wsgi_input.LoopBridge` hops, one chunk at a time; the
  response comes back through an :class:`~.wsgi_threads.Outbox`, which the request's coroutine
  drains into ``send()``.  Both are bounded, so flow control on the socket reaches the
  application thread in both directions.  A response that is complete when the application
  returns costs one wake-up of a thread and one of the loop (see :mod:`.wsgi_threads`).
* ``websocket``: WSGI has no WebSockets; the handshake is refused (the server answers 403).

The pool is bounded (``threads``): when every thread is busy, further requests wait in the
pool's queue, holding no thread, and that queue is bounded too (``queue``, ``--wsgi-queue``):
past it the request is answered 503 at once, as ``--limit-concurrency`` does.  A request
without a body that has to wait watches its client meanwhile: over HTTP/2 dualcorn's request
cycle calls back when the client resets the stream (``dualcorn_on_disconnect``), elsewhere a
watch starts 50-100 ms on (see :mod:`.wsgi_watch`).  One whose client hangs up before a thread
is free aborts its outbox, and the thread that takes it skips the application.  A request
task cancelled by the server aborts its bridge and its outbox, so its app thread stops at its
next hop or post (or never starts the application) and returns to the pool.

Shutting down never blocks the loop: the pool is told to stop and its threads are awaited as an
event, only as long as the server's grace period allows; then the server names the requests it
abandons.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import Any
from urllib.parse import unquote_to_bytes
from wsgiref.types import WSGIApplication

from dualcorn.access_format import REQUEST_ID_KEY
from dualcorn.adapters.capabilities import Capabilities
from dualcorn.adapters.wsgi_errors import ErrorStream
from dualcorn.adapters.wsgi_input import (
    ClientDisconnected,
    LoopBridge,
    Receive,
    Send,
    WSGIInput,
)
from dualcorn.adapters.wsgi_pool import WorkerPool
from dualcorn.adapters.wsgi_responder import FileWrapper, Responder
from dualcorn.adapters.wsgi_threads import OUTBOX_LIMIT, OUTBOX_MEMORY, Outbox
from dualcorn.adapters.wsgi_watch import WaitWatcher
from dualcorn.errors import ConfigError

__all__ = [
    "ZEROCOPY_EXTENSION",
    "ClientDisconnected",
    "EnvironBuilder",
    "ErrorStream",
    "FileWrapper",
    "WSGIAdapter",
]

logger = logging.getLogger("dualcorn.error")

# The ASGI "Zero Copy Send" extension: the server sends a file with the OS's sendfile.
ZEROCOPY_EXTENSION = "http.response.zerocopysend"

_SERVER_PROTOCOLS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2"}
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_HTTP1 = frozenset(("1.1", "1.0"))
# Environ templates kept (one per connection, roughly) before the cache starts again.
_TEMPLATES = 1024
_BUSY_START = {
    "type": "http.response.start",
    "status": 503,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
}
_BUSY_BODY = {"type": "http.response.body", "body": b"Service Unavailable", "more_body": False}


@functools.lru_cache(maxsize=1024)
def _environ_key(header_name: bytes) -> str | None:
    """The environ key for a header name, or None for names that must be dropped."""
    name = header_name.decode("latin-1").upper()
    # A header named "X_Forwarded_For" would otherwise become HTTP_X_FORWARDED_FOR, the same key
    # as the trusted "X-Forwarded-For" a proxy sets; nginx and Apache drop such names too.
    if "_" in name:
        return None
    key = name.replace("-", "_")
    # PEP 3333 (CGI): CONTENT_TYPE and CONTENT_LENGTH have no HTTP_ prefix.
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return key
    return "HTTP_" + key


@functools.lru_cache(maxsize=64)
def _as_latin1(text: str) -> str:
    """A decoded URL path re-expressed as PEP 3333 wants it: its UTF-8 bytes as latin-1."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _below_root(path: str, root: str) -> str:
    """``path`` without its ``root`` prefix (ASGI: ``path`` includes ``root_path``)."""
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :]
    return path


def _path_info(scope: dict[str, Any] | Any, root: str, script_name: str) -> str:
    raw_path: bytes | None = scope.get("raw_path")
    if raw_path is not None and not root and b"%" not in raw_path:
        return raw_path.decode("latin-1")  # nothing to unquote, no mount point to strip
    path: str = scope["path"]
    rest = _as_latin1(_below_root(path, root))
    if raw_path is None:
        return rest
    # PEP 3333: PATH_INFO carries the request's bytes, so a non-UTF-8 "%FF" survives as "\xff";
    # only the raw path has those bytes (the server decoded ``path`` with replacement).
    unquoted = unquote_to_bytes(raw_path).decode("latin-1")
    if not script_name or unquoted == rest:
        return unquoted  # no mount point, or a proxy already stripped it from the raw path
    if _below_root(unquoted, script_name) != unquoted:
        return unquoted[len(script_name) :]
    return rest  # the raw path disagrees with the decoded one: trust the server's decoding


def _host_and_port(host_header: str, scheme: str) -> tuple[str, str]:
    default_port = _DEFAULT_PORTS.get(scheme, "80")
    if host_header.startswith("["):  # "[::1]:8000"
        address, _, port = host_header[1:].partition("]")
        return address, port.lstrip(":") or default_port
    name, _, port = host_header.partition(":")
    return name, port or default_port


def _body_absent(cycle: Any) -> bool:
    """Whether the request cycle behind ``receive`` (its ``__self__``) says the client ended
    the request with its head (HTTP/2 END_STREAM on HEADERS); another server's does not say,
    and its first ``receive()`` is awaited instead."""
    check = getattr(cycle, "dualcorn_body_absent", None)
    return check is not None and bool(check())


def request_may_have_body(environ: dict[str, Any]) -> bool:
    """RFC 9112 6.3: a request without Content-Length or Transfer-Encoding has no body."""
    length = environ.get("CONTENT_LENGTH")
    return "HTTP_TRANSFER_ENCODING" in environ or (length is not None and length != "0")


class EnvironBuilder:
    """Builds PEP 3333 environs for one adapter from per-connection templates.

    What depends only on the connection (the client and server addresses, the scheme, the
    mount point, the HTTP version) is assembled once into a template, kept in a small bounded
    cache; a request's environ is a copy of it plus the request line and the headers.
    """

    __slots__ = ("_base", "_templates")

    def __init__(self, *, multiprocess: bool, errors: ErrorStream, file_wrapper: type) -> None:
        # PEP 3333 "environ Variables": the wsgi.* keys every environ must carry.
        self._base: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.errors": errors,
            "wsgi.multithread": True,  # requests run in a pool of threads
            "wsgi.multiprocess": multiprocess,  # true when workers > 1
            "wsgi.run_once": False,
            # "wsgi.input_terminated" (the Graham Dumpleton amendment, honoured by mod_wsgi,
            # waitress and werkzeug): reading wsgi.input to the end is safe.
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": file_wrapper,
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        self._templates: dict[tuple[Any, ...], dict[str, Any]] = {}

    def _template(self, key: tuple[Any, ...]) -> dict[str, Any]:
        client, server, scheme, root, version = key
        environ = self._base.copy()
        # PEP 3333: SCRIPT_NAME + PATH_INFO is the request path; SCRIPT_NAME is the mount point.
        environ["SCRIPT_NAME"] = _as_latin1(root) if root else ""
        environ["wsgi.url_scheme"] = scheme
        if scheme == "https":
            # The CGI variable (RFC 3875 4.1.18's "protocol-specific" ones; mod_ssl, gunicorn)
            # that some frameworks and middleware read instead of wsgi.url_scheme.
            environ["HTTPS"] = "on"
        if version != "1.1":
            environ["SERVER_PROTOCOL"] = _SERVER_PROTOCOLS.get(version, "HTTP/" + version)
        # PEP 3333: SERVER_NAME and SERVER_PORT are required strings (hypercorn put an int here);
        # without a port (a Unix socket) they come from the request's Host (see build()).
        if server is not None and server[1] is not None:
            environ["SERVER_NAME"] = server[0]
            environ["SERVER_PORT"] = str(server[1])
        if client is not None:
            environ["REMOTE_ADDR"] = client[0]
            environ["REMOTE_PORT"] = str(client[1])
        if len(self._templates) >= _TEMPLATES:
            self._templates.clear()  # many short connections: start again rather than grow
        self._templates[key] = environ
        return environ

    def build(self, scope: Any) -> dict[str, Any]:
        """The environ for one HTTP scope, without ``wsgi.input`` (the caller adds it)."""
        get = scope.get
        root: str = get("root_path", "")
        version = get("http_version", "1.1")
        key: tuple[Any, ...] = (get("client"), get("server"), get("scheme", "http"), root, version)
        try:
            template = self._templates.get(key)
        except TypeError:  # an unhashable address (a list from some other server)
            key = tuple(tuple(part) if type(part) is list else part for part in key)
            template = self._templates.get(key)
        if template is None:
            template = self._template(key)
        environ = template.copy()
        environ["REQUEST_METHOD"] = scope["method"]
        environ["PATH_INFO"] = _path_info(scope, root, environ["SCRIPT_NAME"])
        environ["QUERY_STRING"] = get("query_string", b"").decode("latin-1")

        for raw_name, raw_value in scope["headers"]:
            key_name = _environ_key(raw_name)
            if key_name is None:
                continue
            value = raw_value.decode("latin-1")
            if key_name in environ:
                # RFC 9110 5.3: repeated fields combine with ", "; RFC 6265 5.4: cookies
                # combine with "; " (HTTP/2 clients send each cookie as its own field).
                separator = "; " if key_name == "HTTP_COOKIE" else ", "
                value = environ[key_name] + separator + value
            environ[key_name] = value

        if "SERVER_PORT" not in environ:  # a Unix socket: fall back to what the client asked for
            host, port = _host_and_port(environ.get("HTTP_HOST", "localhost"), key[2])
            environ["SERVER_NAME"] = host
            environ["SERVER_PORT"] = port
        extensions = get("extensions")
        if extensions and REQUEST_ID_KEY in extensions:  # PEP 3333: server keys carry its name
            environ[REQUEST_ID_KEY] = extensions[REQUEST_ID_KEY]["id"]
        return environ


class WSGIAdapter:
    """An ASGI 3 application that runs a WSGI application in at most ``threads`` threads.

    ``multiprocess`` is what ``environ["wsgi.multiprocess"]`` reports: true when the server
    runs several worker processes.  ``queue``: requests that may wait for a thread before the
    next is answered 503; ``outbuf_overflow``, ``outbuf_high_watermark``: see :class:`Outbox`.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        threads: int,
        multiprocess: bool = False,
        queue: int = 1000,
        outbuf_overflow: int = OUTBOX_MEMORY,
        outbuf_high_watermark: int = OUTBOX_LIMIT,
    ) -> None:
        if threads < 1:
            raise ConfigError(f"threads must be at least 1; got {threads!r}")
        self.app = app
        self.threads = threads
        self.queue = queue
        self._outbuf = (outbuf_overflow, outbuf_high_watermark)
        self._busy_logged = float("-inf")
        self._pool: WorkerPool | None = None
        # --metrics-port: counts busy threads and waiting requests (dualcorn.metrics.recorder).
        self.pool_tracker: Any = None
        self._watcher = WaitWatcher()
        self._environ = EnvironBuilder(
            multiprocess=multiprocess, errors=ErrorStream(logger), file_wrapper=FileWrapper
        )

    # asgiref's marker: an ASGI 3 callable although __call__ is not a coroutine function.
    _asgi_single_callable = True

    def __call__(self, scope: Any, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        # A plain function returning the coroutine: one coroutine per request, not two.
        kind = scope["type"]
        if kind == "http":
            return self._serve_http(scope, receive, send)
        if kind == "lifespan":
            return self._serve_lifespan(receive, send)
        if kind == "websocket":
            return self._refuse_websocket(receive, send)
        # ASGI: "Applications should raise an exception for unknown scope types".
        return _refuse_scope(kind)

    def dualcorn_capabilities(self) -> Capabilities:
        """PEP 3333 has no WebSockets; the thread pool is closed by the server."""
        return Capabilities(websockets=False, close=self.shutdown)

    async def shutdown(self, grace: float | None = None) -> list[str]:
        """Stop the thread pool and wait up to ``grace`` seconds for its threads to end.

        Returns the requests still running in the app when the time ran out: their daemon
        threads are left behind (nothing can interrupt a thread), so the process can exit, and
        the adapter forgets the pool (a later shutdown returns at once).
        """
        pool = self._pool
        if pool is None:
            return []
        pool.stop()
        # Waiting is an event on the loop, not a join in another thread: those threads may
        # still need the loop for their last hops, and a loop that is closing must not wait
        # on an executor stuck behind them.
        stuck = await pool.join(grace)
        self._pool = None
        return stuck

    def _ensure_pool(self) -> WorkerPool:
        if self._pool is None:
            self._pool = WorkerPool(self.threads, "dualcorn-wsgi")
        return self._pool

    async def _serve_http(self, scope: Any, receive: Receive, send: Send) -> None:
        environ = self._environ.build(scope)
        loop = asyncio.get_running_loop()
        body_read = not request_may_have_body(environ)
        bridge: LoopBridge | None = None
        # dualcorn's own receive() is a request cycle's method, with two hooks for HTTP/2
        # (another server's says nothing: the adapter then awaits receive() and watches).
        cycle: Any = None
        if not body_read:
            bridge = LoopBridge(loop)
            wsgi_input = WSGIInput(bridge, receive)
        elif scope.get("http_version") in _HTTP1:
            # RFC 9112 6.3 (7): an HTTP/1.x request without Content-Length or Transfer-Encoding
            # has no body at all; nothing to receive.
            wsgi_input = WSGIInput(None, receive)
        elif _body_absent(cycle := getattr(receive, "__self__", None)):
            # Nor has an HTTP/2 request whose HEADERS ended the stream (RFC 9113 8.1), which
            # only the cycle knows: its receive() is not awaited either.
            wsgi_input = WSGIInput(None, receive)
        else:
            # RFC 9112 6.3: no Content-Length and no Transfer-Encoding means no body, so the
            # first receive() answers at once; doing it here spares the app thread a hop.
            # (An HTTP/2 body without a length still says more_body: then it gets a bridge.)
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if message.get("more_body", False):
                bridge = LoopBridge(loop)
            wsgi_input = WSGIInput(bridge, receive, body=message.get("body", b""))
        environ["wsgi.input"] = wsgi_input
        pool = self._ensure_pool()
        backlog = pool.backlog()
        if backlog >= self.queue:
            # --wsgi-queue: every thread is busy and enough requests wait already (8 KiB or
            # more each); refuse at once, as --limit-concurrency does, rather than queue more.
            now = loop.time()
            if now - self._busy_logged >= 1.0:  # at most once a second: this is an overload
                self._busy_logged = now
                logger.warning("--wsgi-queue (%d) reached: answering 503", self.queue)
            await send(_BUSY_START)
            await send(_BUSY_BODY)
            return
        extensions = scope.get("extensions") or {}
        outbox = Outbox(loop, *self._outbuf)
        responder = Responder(
            self.app, environ, outbox, wsgi_input, zerocopy=ZEROCOPY_EXTENSION in extensions
        )
        job: Any = responder
        if self.pool_tracker is not None:
            job = self.pool_tracker.wrap(job)  # --metrics-port: busy threads, waiting requests
        pool.submit(job)
        watch = None
        if body_read and backlog >= 0:
            # No idle thread: it waits, and if its client hangs up meanwhile, nobody should run
            # it.  (One an idle thread takes at once needs no watch: --wsgi-queue's 503 and the
            # app's own posts cover it.)  Over HTTP/2 the cycle calls back on a reset stream
            # or a lost connection (no half-close to read there: RFC 9113 8.1 ends a request
            # with END_STREAM): no watch, and the request is skipped at once.
            # A watch receive()s, so not while body is left (an HTTP/2 body without a
            # length): it would take a chunk from the app.
            hook = getattr(cycle, "dualcorn_on_disconnect", None)
            if hook is not None:
                hook(outbox.abandon)
            elif bridge is None:
                watch = self._watcher.add(outbox, receive, loop)
        try:
            await outbox.deliver(send)
        except asyncio.CancelledError:
            # The server abandoned the request: release the app thread from its hop or wait.
            outbox.abort()
            if bridge is not None:
                bridge.abort()
            raise
        finally:
            if watch is not None:
                watch.stop()

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._ensure_pool()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # The requests running now finish first; the server bounds this wait by what is
                # left of its grace period (cancelling it leaves the pool to the server).
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _refuse_websocket(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] == "websocket.connect":
            # ASGI: websocket.close before websocket.accept rejects the handshake (HTTP 403).
            await send({"type": "websocket.close"})


async def _refuse_scope(kind: str) -> None:
    raise ValueError(f"a WSGI application cannot serve {kind!r} scopes")
