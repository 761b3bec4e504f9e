"""What every HTTP/1.1 connection does, whichever parser reads its bytes.

The message loop (:mod:`dualcorn.protocols.http1.messages`, whose subclasses only pick the field
tokenizer, h11 or httptools) turns bytes into calls of :meth:`HTTPConnection.start_request`,
``cycle.feed_body``, ``cycle.feed_end`` and :meth:`HTTPConnection.reject`.  This class owns the
rest: the peer addresses (the facts :func:`~dualcorn.protocols.scope.http_scope` reads), the
cycle task with its :class:`~dualcorn.protocols.http1.writer.HTTP1Writer`, keep-alive and its
cap, the three timeouts (idle keep-alive, request head, body stall), flow control (it is the
cycle's :class:`~dualcorn.protocols.writer.CycleOwner`), graceful shutdown, and the switch to a
WebSocket session (:meth:`HTTPConnection.upgrade_websocket`).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from dualcorn.errors import ProtocolError
from dualcorn.protocols.cycle import RequestCycle, run_cycle
from dualcorn.protocols.flow import BODY, PIPELINE, ReadFlow, WriteFlow
from dualcorn.protocols.http1.wire import error_response
from dualcorn.protocols.http1.writer import HTTP1Writer
from dualcorn.protocols.logline import refusal_line
from dualcorn.protocols.request_head import HeadFacts, RequestHead
from dualcorn.protocols.scope import (
    HTTP_EXTENSIONS,
    WS_EXTENSIONS,
    http_scope,
    scope_template,
    websocket_scope,
)
from dualcorn.protocols.state import Connection, ServerState
from dualcorn.protocols.websocket.handshake import is_websocket_upgrade
from dualcorn.proxies import ProxyHeaders

__all__ = ["HTTPConnection"]

_IDLE, _HEAD = 0, 1  # what the running timer guards
# At shutdown an idle keep-alive connection may already carry a request the server has not read
# (RFC 9112 9.6: the client cannot know the server is closing).  Closing at once would reset it;
# the connection instead gets this long to deliver that request, answered with
# "Connection: close".  It matters to blue-green reloads and rolling restarts, where another
# process is ready to serve the client's next connection.
IDLE_DRAIN = 0.5


class HTTPConnection(asyncio.Protocol, Connection):
    transport: asyncio.Transport
    read_flow: ReadFlow
    writer: HTTP1Writer
    # Plain TCP's; a TLS connection gets its own values once, at its hand-over (dualcorn.tls).
    scheme = "http"
    ws_scheme = "ws"
    extensions = HTTP_EXTENSIONS
    ws_extensions = WS_EXTENSIONS

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.config = state.config
        self.loop = asyncio.get_running_loop()
        self.write_flow = WriteFlow()
        self.cycle: RequestCycle | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        # Set by a PROXY protocol preamble (dualcorn.proxy_protocol) before connection_made.
        self.proxied: tuple[tuple[str, int] | None, tuple[str, int] | None] | None = None
        # The forwarding-header policy when this connection's peer is a trusted proxy.
        self.forwarding: ProxyHeaders | None = None
        self.requests_served = 0
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._timer_kind = _HEAD
        self._head_start = 0.0  # when the head timeout started: its extensions stop at the max
        self._head_bytes_seen = False
        self._closed = asyncio.Event()
        # The client half-closed (RFC 9112 9.6): answer what it sent before, then close.
        self.eof = False
        self._linger: asyncio.TimerHandle | None = None
        # What every request's scope shares, once the connection's facts are known.
        self._template: dict[str, Any] | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = transport = cast(asyncio.Transport, transport)
        self.read_flow = ReadFlow(transport)
        self.writer = HTTP1Writer(transport, self.write_flow, self.state)
        transport.set_write_buffer_limits(high=self.config.write_high_water)
        if self.state.at_connection_limit():
            transport.abort()  # --limit-connections: closed at once, counted in the log
            return
        if self.proxied is None:
            self.client = _address(transport.get_extra_info("peername"))
            self.server = _address(transport.get_extra_info("sockname"))
        else:
            self.client, self.server = self.proxied
        policy = self.state.proxy_headers
        if policy is not None and policy.trusted.trusts(self.client[0] if self.client else None):
            self.forwarding = policy
        self._template = scope_template(self)
        self.state.connections.add(self)
        if self.state.stopping:  # accepted just before the listener closed
            self.shutdown()
            return
        # nginx client_header_timeout also covers a new connection that sends nothing.
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self._closed.set()
        self._stop_timer()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        cycle = self.cycle
        if cycle is not None and not cycle.complete:
            cycle.feed_disconnect()
        # Wake an app waiting for the buffer to drain: its send then sees the disconnect.
        self.write_flow.resume_writing()

    def pause_writing(self) -> None:
        self.write_flow.pause_writing()

    def resume_writing(self) -> None:
        self.write_flow.resume_writing()

    # --- Called by the parser subclass ---------------------------------------------------

    def head_started(self) -> None:
        """The first bytes of a request head arrived: the head timeout replaces idle's."""
        self._head_bytes_seen = True
        if self._deadline is None or self._timer_kind == _IDLE:
            self._arm_head()

    def start_request(self, head: RequestHead, facts: HeadFacts) -> RequestCycle | None:
        """Build the scope and start the app on it; ``None`` if the request was refused."""
        self._deadline = None  # the head is in: no timer runs while the app has the request
        self._head_bytes_seen = False
        config = self.config
        state = self.state
        limit = config.limit_request_body
        if limit is not None and facts.content_length is not None and facts.content_length > limit:
            self.reject(ProtocolError("the declared body is over --limit-request-body", 413))
            return None
        limit = config.limit_concurrency  # state.at_concurrency_limit(), inline: hot path
        if limit is not None and len(state.tasks) + len(state.ws_tasks) >= limit:
            state.error_logger.warning("--limit-concurrency reached: answering 503")
            self.reject(ProtocolError("too many requests in flight", 503))
            if state.access_log:  # a 503 is a response like any other: it gets its line
                line = refusal_line(self.client, *head[:3], 503, state.access_format)
                state.access_logger.info(*line)
            return None
        http10 = head.version == b"1.0"
        # RFC 9112 9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
        keep_alive = facts.keep_alive_token if http10 else not facts.close
        cap = config.limit_keepalive_requests
        if (cap is not None and self.requests_served + 1 >= cap) or state.stopping \
                or state.draining:  # fmt: skip
            keep_alive = False
        scope = http_scope(self, head, self._template)
        writer = self.writer
        writer.begin(scope["method"] == "HEAD", http10, keep_alive)
        cycle = RequestCycle(
            scope,
            self,
            writer,
            state,
            expect_100=facts.expect_continue and not http10,
            more_body=facts.chunked or bool(facts.content_length),  # facts.has_body, inline
        )
        self.cycle = cycle
        # run_cycle removes its own task from state.tasks when it ends (no done-callback).
        cycle.task = task = self.loop.create_task(run_cycle(cycle, state.app))
        state.tasks.add(task)
        return cycle

    def wants_websocket(self, headers: list[Any]) -> bool:
        """Whether this request is a WebSocket upgrade that the server will serve as one.

        With the websockets package missing it still is, to be refused with 501 rather than
        passed to the app, whose router would answer a misleading 404.
        """
        state = self.state
        return (state.websockets or state.websockets_missing) and is_websocket_upgrade(headers)

    def upgrade_websocket(self, head: RequestHead, trailing: bytes) -> None:
        """Hand the connection to a WebSocket session (RFC 6455 4.2).

        A parser calls this instead of :meth:`start_request` once a request that
        :meth:`wants_websocket` is complete, with the bytes it read past the request head.
        """
        state = self.state
        if not state.websockets:
            # RFC 9110 15.6.2: 501, the server lacks what the request needs.
            state.error_logger.warning(
                "WebSocket request refused with 501: the websockets package is not installed "
                "(pip install websockets, or dualcorn[standard])"
            )
            self.reject(ProtocolError("WebSocket support is not installed", 501))
            if state.access_log:
                line = refusal_line(self.client, *head[:3], 501, state.access_format)
                state.access_logger.info(*line)
            return
        from dualcorn.protocols.websocket.handshake import Handshake, subprotocols
        from dualcorn.protocols.websocket.session import WebSocketSession

        self._stop_timer()
        if state.stopping:
            self.reject(ProtocolError("the server is shutting down", 503))
            return
        if state.at_concurrency_limit():
            state.error_logger.warning("--limit-concurrency reached: answering 503")
            self.reject(ProtocolError("too many requests in flight", 503))
            return
        # ASGI websocket spec, "Connection Scope".
        scope = websocket_scope(self, head, subprotocols(head.headers))
        handshake = Handshake(*head, self.config)
        session = WebSocketSession(state, self.transport, scope, handshake, self.write_flow)
        state.connections.discard(self)
        self.transport.set_protocol(session)
        session.start(trailing)
        if session.task is not None:
            state.ws_tasks.add(session.task)
            session.task.add_done_callback(state.ws_tasks.discard)

    def reject(self, error: ProtocolError) -> None:
        """Answer a request the server will not serve, then close (RFC 9112 9.6)."""
        self.state.error_logger.debug("refusing request from %s: %s", self.client, error)
        cycle = self.cycle
        if not self.transport.is_closing() and (cycle is None or not cycle.started):
            self.transport.write(error_response(error.status))
        if cycle is not None:
            cycle.feed_disconnect()
        elif self.state.metrics is not None:
            self.state.metrics.request_refused(error.status)
        self.transport.close()

    # --- Called by the cycle -------------------------------------------------------------

    def cycle_done(self, cycle: RequestCycle) -> None:
        self.requests_served += 1
        state = self.state
        state.total_requests += 1
        for callback in state.on_request_done:
            callback()
        self.cycle = None
        transport = self.transport
        if not self.writer.keep_alive or state.stopping or transport.is_closing():
            self.close_after_writing()
            return
        # Resume before the next request is parsed, not after: if yet another pipelined
        # request is buffered behind it, parsing pauses reading again and it must stay paused.
        self.read_flow.resume(PIPELINE)
        if not self.next_request():
            # The app answered before reading all of the body: the rest of it would be read
            # as the next request, so end the connection instead (RFC 9112 9.3).
            self.close_after_writing()
            return
        if self.cycle is None:
            if self.eof:
                # RFC 9112 9.6: every request sent before the client's FIN is answered.
                self.close_after_writing()
            elif not self._head_bytes_seen:
                self._arm(_IDLE, self.config.timeout_keep_alive)

    def close_after_writing(self) -> None:
        """Close once the buffered response is sent; a client that reads none of it for
        --timeout-send (nginx ``send_timeout``) is dropped: close() alone would wait for ever."""
        transport = self.transport
        if not transport.is_closing():  # a second close() breaks asyncio's TLS transport
            transport.close()
        # TLS transports bound their own closing (ssl_shutdown_timeout in asyncio and uvloop).
        if self._linger is None and transport.get_extra_info("ssl_object") is None:
            self._check_linger(0)

    def _check_linger(self, before: int) -> None:
        self._linger = None
        left = self.transport.get_write_buffer_size()
        if not left:
            return
        if before and left >= before:
            self.state.error_logger.debug("the client read nothing in --timeout-send; closing")
            self.transport.abort()
            return
        self._linger = self.loop.call_later(self.config.timeout_send, self._check_linger, left)

    def pause_body(self) -> None:
        self.read_flow.pause(BODY)

    def resume_body(self) -> None:
        self.read_flow.resume(BODY)

    def body_stalled(self) -> None:
        self.transport.close()

    def client_gone(self) -> None:
        self.transport.close()

    def body_too_large(self) -> None:
        self.reject(ProtocolError("the request body is over --limit-request-body", 413))

    def next_request(self) -> bool:
        """Make ready for the next request on this connection; False if that is impossible."""
        raise NotImplementedError

    # --- Called by the server ------------------------------------------------------------

    def shutdown(self) -> None:
        if self.cycle is not None:
            self.writer.keep_alive = False
            return
        # The server waits for state.tasks: draining counts as work in flight.
        task = self.loop.create_task(self._drain())
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _drain(self) -> None:
        """Close once idle for IDLE_DRAIN, or after the request that arrives meanwhile."""
        try:
            async with asyncio.timeout(IDLE_DRAIN):
                await self._closed.wait()
        except TimeoutError:
            if self.cycle is None and not self._head_bytes_seen:
                self.transport.close()
                return
            await self._closed.wait()  # the request's response closes it (state.stopping)

    # --- Timers --------------------------------------------------------------------------

    # One deadline per connection, checked lazily: setting or clearing it per request is an
    # attribute write, and the single timer behind it wakes at most once per timeout period to
    # re-arm itself or expire (creating and cancelling a timer twice per request showed up in
    # profiles of small responses).

    def _arm(self, kind: int, seconds: float) -> None:
        self._timer_kind = kind
        deadline = self._deadline = self.loop.time() + seconds
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._expired)

    def count_handshake(self, accepted_at: float) -> None:
        """The first head's timeout began at the accept: a TLS handshake spent part of it."""
        if self.cycle is None and self._deadline is not None:
            self._head_start = accepted_at
            left = accepted_at + self.config.timeout_request_head - self.loop.time()
            self._arm(_HEAD, max(left, 0.0))

    def _arm_head(self) -> None:
        self._head_start = self.loop.time()
        self._arm(_HEAD, self.config.timeout_request_head)

    def _credit_head(self, size: int) -> None:
        """Apache mod_reqtimeout ``header=20-40,MinRate=500``: bytes of the head buy time.

        Every ``timeout_min_rate`` bytes push the deadline back one second, never more than
        ``timeout_request_head`` ahead of now nor past ``timeout_request_head_max`` after the
        head began.  A client sending at the rate or above keeps going; one sending at a
        fraction f of it is closed after timeout_request_head / (1 - f) seconds at most, and
        none lasts past the max.  Only the deadline moves: the lazy timer re-arms itself.
        """
        deadline = self._deadline
        if deadline is None or self._timer_kind != _HEAD:
            return
        config = self.config
        head = config.timeout_request_head
        ceiling = self._head_start + max(head, config.timeout_request_head_max)
        extended = min(deadline + size / config.timeout_min_rate, self.loop.time() + head, ceiling)
        if extended > deadline:
            self._deadline = extended

    def _stop_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._expired)
            return
        self._deadline = None
        if self._timer_kind == _HEAD and self._head_bytes_seen and self.cycle is None:
            # RFC 9110 15.5.9: 408 tells the client the server gave up waiting for the head.
            self.reject(ProtocolError("the request head did not arrive in time", 408))
        else:
            self.close_after_writing()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
