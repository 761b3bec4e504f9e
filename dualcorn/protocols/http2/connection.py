"""One HTTP/2 connection (RFC 9113): streams, limits, timeouts, graceful GOAWAY.

Theory of operation.  Bytes arrive in :meth:`H2Connection.data_received`.  The flood guard
(:mod:`~dualcorn.protocols.http2.limits`) reads their frame headers first; the frame layer
(:mod:`~dualcorn.protocols.http2.engine`) turns them into events; each request head goes
through the shared policy (:mod:`~dualcorn.protocols.http2.request`) and, if served, becomes a
:class:`~dualcorn.protocols.http2.stream.H2Stream` running the same ASGI request cycle as
HTTP/1.1.  Everything the frame layer queues (SETTINGS and PING acknowledgements, window
updates, responses) goes out in one write per read, or per turn of the loop when apps write.

Streams: at most SETTINGS_MAX_CONCURRENT_STREAMS at once, counted until the app of each is
done (a stream the client reset still counts while its app runs: Rapid Reset); past it a new
stream is refused with REFUSED_STREAM, which a client may retry (RFC 9113 8.7).
``--limit-concurrency`` counts streams like requests (503 on the stream).

How a connection ends (timeouts, the keep-alive cap, the graceful GOAWAY, shutdown) is
:mod:`~dualcorn.protocols.http2.ends`.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from dualcorn.errors import ProtocolError
from dualcorn.protocols.cycle import RequestCycle, run_cycle
from dualcorn.protocols.http2 import events as ev
from dualcorn.protocols.http2.ends import GOAWAY_GRACE, ConnectionEnds
from dualcorn.protocols.http2.engines import frame_observer, new_engine, stream_cap
from dualcorn.protocols.http2.events import H2ConnectionError
from dualcorn.protocols.http2.limits import FloodGuard, limits_for
from dualcorn.protocols.http2.request import (
    VERSION,
    Malformed,
    checked_request_head,
    h2_request_head,
)
from dualcorn.protocols.http2.stream import H2Stream, StreamHandler
from dualcorn.protocols.logline import refusal_line
from dualcorn.protocols.request_head import HeadFacts, RequestHead
from dualcorn.protocols.scope import HTTP_EXTENSIONS, WS_EXTENSIONS, http_scope, scope_template
from dualcorn.protocols.state import Connection, ServerState
from dualcorn.proxies import ProxyHeaders

__all__ = ["GOAWAY_GRACE", "H2Connection"]


class H2Connection(ConnectionEnds, asyncio.Protocol, Connection):
    """The protocol of a connection that speaks HTTP/2; see the module notes."""

    transport: asyncio.Transport
    # Plain TCP's; TLS sets its own once per connection (dualcorn.tls).
    scheme = "http"
    ws_scheme = "ws"
    # ASGI "http.response.early_hint" (RFC 8297 103) only over HTTP/2, as hypercorn: an
    # HTTP/1.1 client that does not expect a 1xx may take it for the response.
    extensions = {**HTTP_EXTENSIONS, "http.response.early_hint": {}}
    ws_extensions = WS_EXTENSIONS

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.config = config = state.config
        self.loop = asyncio.get_running_loop()
        self.limits = limits = limits_for(state)
        # --http2-engine: h2 or zttp, behind the same events (protocols/http2/engines.py).
        self.engine = new_engine(config, limits.settings)
        self._stream_cap = stream_cap(config, self.engine)
        self.guard = FloodGuard(limits, self.loop.time(), frame_observer(self.engine))
        self.streams: dict[int, StreamHandler] = {}
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.proxied: tuple[tuple[str, int] | None, tuple[str, int] | None] | None = None
        self.forwarding: ProxyHeaders | None = None
        self.requests_served = 0
        self.streams_opened = 0
        self.lost = False
        self.write_paused = False
        self._socket_full = False
        self._holding = False
        self._write_soon = False
        # Body bytes queued in the frame layer, written at once past --write-high-water so
        # that pause_writing stops an app that never yields (see write_soon).
        self.queued = 0
        self._closed = asyncio.Event()
        self._streams_changed = asyncio.Event()  # a stream finished, or the connection lost
        self._going_away = False  # the first GOAWAY was sent
        self._last_stream: int | None = None  # the final GOAWAY's last stream id
        self._highest_request = 0  # the client's last stream read so far (a Request event)
        self._timer: asyncio.TimerHandle | None = None
        self._abort: asyncio.TimerHandle | None = None  # see _close
        self._idle_timeout = config.timeout_request_head  # until the first request
        self._line_limit = config.limit_request_line
        self._max_fields = config.limit_request_fields
        self._underscores = config.header_map
        self._template: dict[str, Any] | None = None  # set by connection_made
        self._write_high_water = config.write_high_water

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self.config.write_high_water)
        state = self.state
        if state.at_connection_limit():
            transport.abort()
            return
        if self.proxied is None:
            self.client = _address(transport.get_extra_info("peername"))
            self.server = _address(transport.get_extra_info("sockname"))
        else:
            self.client, self.server = self.proxied
        policy = state.proxy_headers
        if policy is not None and policy.trusted.trusts(self.client[0] if self.client else None):
            self.forwarding = policy
        # The scope keys every stream of this connection shares (HTTP/1.1 keeps one too).
        self._template = scope_template(self)
        state.connections.add(self)
        self.engine.start()
        self._flush()
        self._arm_idle()
        if state.stopping:
            self.shutdown()

    def count_handshake(self, accepted_at: float) -> None:
        """A TLS handshake used part of the first request's time (see dualcorn.tls)."""
        left = accepted_at + self.config.timeout_request_head - self.loop.time()
        self._arm(max(left, 0.0))

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        flood = self.guard.scan(data, now)
        if flood is not None:
            self._fail(flood, self.guard.error_code)
            return
        try:
            events = self.engine.receive(data)
        except H2ConnectionError as exc:
            self.state.error_logger.debug("HTTP/2 connection error from %s: %s", self.client, exc)
            self._flush()
            self._close()
            return
        for event in events:
            # isinstance narrows the type for mypy at the price of a C check (cast() is a
            # Python call per event); the most frequent events first.
            if isinstance(event, ev.CheckedRequest):
                self._checked_request(event)
            elif isinstance(event, ev.Body):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.feed_body(event.data, event.flow_length)
                else:  # a stream already answered: give the window back
                    self.engine.ack(event.stream_id, event.flow_length)
            elif isinstance(event, ev.End):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.feed_end()
            elif isinstance(event, ev.Request):
                self._request(event)
            elif isinstance(event, ev.Window):
                self._window(event.stream_id)
            elif isinstance(event, ev.Reset):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.lost()
            elif isinstance(event, ev.Malformed):
                self._malformed(event)
            elif isinstance(event, ev.PingAcked):
                self.ping_acked(event.data)
            elif isinstance(event, ev.Recycle):  # the zttp engine nears a count of zttp's
                self._go_away(hold=True)  # as at the stream cap: see ends.py
            elif isinstance(event, ev.Closed):
                # RFC 9113 6.8: the client opens no more streams; the open ones finish.
                # The frame layer read the whole batch: a stream opened after the GOAWAY in
                # it is past the last one seen before (refused, as after the server's own).
                self._going_away = True
                if self._last_stream is None:
                    self._last_stream = self._highest_request
                self._close_if_idle()
            if self.transport.is_closing():
                return
        self._flush()

    def eof_received(self) -> bool | None:
        # The client sent all it will: streams it opened cannot get more body.  An HTTP/2
        # client ends a connection with GOAWAY, not a half-close: close (RFC 9113 5.4).
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.state.connections.discard(self)
        self._closed.set()
        self._streams_changed.set()
        self._stop_timer()
        if self._abort is not None:  # else the loop holds this connection for --timeout-send
            self._abort.cancel()
        for stream in list(self.streams.values()):
            stream.lost()

    def pause_writing(self) -> None:
        # The client is not reading what the server writes.  Reading stops too: every PING or
        # SETTINGS frame read would add an acknowledgement to the unsent bytes (CVE-2019-9512).
        self.write_paused = self._socket_full = True
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._socket_full = False
        self.write_paused = self._holding
        if not self.transport.is_closing():
            self.transport.resume_reading()
        for stream in list(self.streams.values()):
            stream.wake()

    # --- Requests --------------------------------------------------------------------------

    def _request(self, event: ev.Request) -> None:
        sid = event.stream_id
        if not self._admit(sid):
            return
        try:
            head, facts = h2_request_head(
                event.headers,
                line_limit=self._line_limit,
                list_limit=self.limits.header_list,
                max_fields=self._max_fields,
                underscores=self._underscores,
                ended=event.ended,
            )
        except ProtocolError as exc:
            code = ev.PROTOCOL_ERROR if isinstance(exc, Malformed) else ev.NO_ERROR
            self._refused(sid, event.headers, exc.status, str(exc), code)
            return
        if head.method == b"CONNECT":  # RFC 8441: request.py lets only an extended CONNECT by
            self._extended_connect(event, head)
            return
        self._serve(sid, head, facts, event.ended)

    def _checked_request(self, event: ev.CheckedRequest) -> None:
        """A head whose pseudo-headers and field syntax the frame layer checked (zttp)."""
        sid = event.stream_id
        if not self._admit(sid):
            return
        try:
            head, facts = checked_request_head(
                event.method,
                event.target,
                event.headers,
                line_limit=self._line_limit,
                list_limit=self.limits.header_list,
                max_fields=self._max_fields,
                underscores=self._underscores,
                ended=event.ended,
            )
        except ProtocolError as exc:
            code = ev.PROTOCOL_ERROR if isinstance(exc, Malformed) else ev.NO_ERROR
            fields = [(b":method", event.method), (b":path", event.target)]
            self._refused(sid, fields, exc.status, str(exc), code)
            return
        self._serve(sid, head, facts, event.ended)

    def _admit(self, sid: int) -> bool:
        """Whether a new stream may be served; else it is refused (REFUSED_STREAM)."""
        self._highest_request = sid
        last = self._last_stream
        if (last is not None and sid > last) or len(self.streams) >= self.limits.max_streams:
            # RFC 9113 5.1.2 and 6.8: not processed, so the client may retry it elsewhere.
            self._refuse(sid, ev.REFUSED_STREAM)
            return False
        return True

    def _serve(self, sid: int, head: RequestHead, facts: HeadFacts, ended: bool) -> None:
        """Run the request cycle of a checked head on a new stream."""
        state = self.state
        limit = self.config.limit_request_body
        if limit is not None and facts.content_length is not None and facts.content_length > limit:
            fields = [(b":method", head.method), (b":path", head.target)]
            self._refused(sid, fields, 413, "body over --limit-request-body", ev.NO_ERROR)
            return
        if state.at_concurrency_limit():
            state.error_logger.warning("--limit-concurrency reached: answering 503")
            fields = [(b":method", head.method), (b":path", head.target)]
            self._refused(sid, fields, 503, "too many requests in flight", ev.NO_ERROR)
            return
        self.opened()
        stream = H2Stream(self, sid, head.method == b"HEAD")
        self.streams[sid] = stream
        cycle = RequestCycle(
            http_scope(self, head, self._template),
            stream,
            stream,
            state,
            expect_100=facts.expect_continue,
            more_body=not ended,
        )
        stream.cycle = cycle
        # run_cycle removes its own task from state.tasks when it ends.
        cycle.task = task = self.loop.create_task(_run_stream(stream, cycle, state.app))
        state.tasks.add(task)

    def opened(self) -> None:
        """A stream is served: the idle timer stops, --http2-max-requests counts it."""
        if self._timer is not None and not self._going_away:
            self._stop_timer()  # the idle timer; a graceful end keeps its own
        self.streams_opened += 1
        cap = self._stream_cap
        if cap is not None and self.streams_opened >= cap:
            self._go_away(hold=True)  # a client loading the connection: see ends.py
        elif self.state.draining:
            self._go_away()

    def _extended_connect(self, event: ev.Request, head: RequestHead) -> None:
        if not self.limits.connect_protocol:
            # RFC 9113 8.3: ":protocol" is undefined unless the server sent
            # SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 3): a malformed request.
            reason = ":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 3)"
            self._refused(event.stream_id, event.headers, 400, reason, ev.PROTOCOL_ERROR)
            return
        from dualcorn.protocols.http2.websocket import open_websocket

        refusal = open_websocket(self, event, head)
        if refusal is not None:
            self._refused(event.stream_id, event.headers, *refusal)

    def _malformed(self, event: ev.Malformed) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if stream is not None:  # DATA that did not add up to Content-Length, mid-request
            stream.lost()
            self._refuse(event.stream_id, ev.PROTOCOL_ERROR)
            unread = stream.release()
            if unread:
                self.engine.ack(event.stream_id, unread)  # the connection window
            self._close_if_idle()
            return
        self._refused(event.stream_id, None, 400, event.reason, ev.PROTOCOL_ERROR)

    def _refused(
        self, sid: int, fields: list[tuple[bytes, bytes]] | None, status: int, reason: str,
        code: int,
    ) -> None:  # fmt: skip
        """Answer a request the server will not serve with ``status`` on its stream."""
        state = self.state
        state.error_logger.debug("refusing HTTP/2 request from %s: %s", self.client, reason)
        self.respond_error(sid, status, code)
        if state.metrics is not None:
            state.metrics.request_refused(status)
        if state.access_log:
            method = path = b""
            for name, value in fields or ():
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
            line = refusal_line(self.client, method, path, VERSION, status, state.access_format)
            state.access_logger.info(*line)
        if self.guard.server_reset(self.loop.time()) is not None:  # CVE-2025-8671
            self._fail("too many refused requests", ev.ENHANCE_YOUR_CALM)

    def respond_error(self, sid: int, status: int, code: int = ev.NO_ERROR) -> None:
        """A bodiless response that ends the stream; RST_STREAM ``code`` if the client is
        still sending (RFC 9113 8.1: "stop sending", 8.1.1 for a malformed request)."""
        engine = self.engine
        fields = [(b":status", b"%d" % status), (b"content-length", b"0")]
        if self.state.date is not None:
            fields.append((b"date", self.state.date.value()))
        fields += self.limits.default_fields
        engine.send_headers(sid, fields, True)
        if not engine.client_done(sid):
            engine.reset(sid, code)
        self.schedule_write()

    def _refuse(self, sid: int, code: int) -> None:
        self.engine.reset(sid, code)
        if self.guard.server_reset(self.loop.time()) is not None:
            self._fail("too many refused streams (Rapid Reset)", ev.ENHANCE_YOUR_CALM)

    def _window(self, sid: int) -> None:
        if sid:
            stream = self.streams.get(sid)
            if stream is not None:
                stream.wake()
            return
        for stream in list(self.streams.values()):
            stream.wake()

    # --- Called by the streams -------------------------------------------------------------

    def request_done(self) -> None:
        self.requests_served += 1
        state = self.state
        state.total_requests += 1
        for callback in state.on_request_done:
            callback()

    def stream_finished(self, stream: StreamHandler) -> None:
        """The app is done and everything it sent is written (or the stream was reset)."""
        if self.streams.pop(stream.id, None) is None:
            return
        self._streams_changed.set()
        engine = self.engine
        if not stream.reset and not engine.client_done(stream.id):
            # RFC 9113 8.1: the response is complete; the client may stop sending.
            engine.reset(stream.id, ev.NO_ERROR)
        unread = stream.release()
        if unread:
            engine.ack(stream.id, unread)  # the connection window, for the other streams
        if not self._write_soon:
            self.schedule_write()
        if not self.streams:
            self._close_if_idle()

    def schedule_write(self) -> None:
        """Write what the frame layer queued, once per turn of the loop."""
        if not self._write_soon:
            self._write_soon = True
            self.loop.call_soon(self._flush)

    def write_soon(self, body_bytes: int) -> None:
        """:meth:`schedule_write`, or write now once --write-high-water body bytes wait: a
        client with a 2^31 window that reads nothing must not make the server hold all."""
        self.queued += body_bytes
        if self.queued >= self._write_high_water:
            self._flush()
        elif not self._write_soon:
            self._write_soon = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._write_soon = False
        if self._holding:  # until the PING before the first GOAWAY returns (see ends.py)
            return
        self.queued = 0
        data = self.engine.bytes_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)


async def _run_stream(stream: H2Stream, cycle: RequestCycle, app: Any) -> None:
    """The cycle's task: :func:`run_cycle`, then the stream learns that its app returned
    (in the task's last step: a done-callback would cost a loop handle per request)."""
    try:
        await run_cycle(cycle, app)
    finally:
        if not stream.done:
            stream.app_returned()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
