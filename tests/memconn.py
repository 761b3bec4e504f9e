"""An in-memory HTTP/1.1 connection: feed bytes, read what the server wrote, no socket.

Layer 2 of the test plan (uvicorn's ``get_connected_protocol`` is the model): a real protocol
object (h11 or httptools), a real :class:`ServerState` and a real app (ASGI, or WSGI through
the real adapter and its thread pool) on a :class:`~tests.support.MemoryTransport`.  Nothing
is mocked but the socket, so these tests exercise exactly the code a socket would.  Bytes go to
the transport's protocol, so a connection that began with the HTTP/2 preface goes on as the
HTTP/2 connection it was handed to (:class:`tests.h2memconn.H2Wire` drives that side), and
:class:`Wire` and ``H2Wire`` share a request API for the ``wire`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

from dualcorn import Config
from dualcorn.adapters import prepare_app
from dualcorn.protocols.state import ServerState
from tests.rawhttp import Response, ResponseReader, get
from tests.support import MemoryTransport

__all__ = [
    "PARSERS",
    "Fields",
    "MemoryConnection",
    "Wire",
    "WireFactory",
    "parse_responses",
    "protocol_class",
]

Fields = list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]

PARSERS = [
    name for name in ("h11", "httptools", "zttp") if name == "h11" or importlib.util.find_spec(name)
]


def protocol_class(name: str) -> Any:
    from dualcorn.protocols import protocol_class as resolve

    return resolve(name)


class MemoryConnection:
    """One connection of a server that is not listening anywhere.

    ``await conn.send(data)`` feeds bytes (a list feeds them as separate reads) and lets the
    app run until every request it can answer is answered; ``conn.written`` is what the server
    wrote, ``conn.closed`` whether it closed, ``conn.responses()`` the parsed answers;
    ``await conn.eof()`` half-closes the client's side.
    """

    def __init__(self, parser: str, app: Any, *, interface: str = "asgi3", **options: Any) -> None:
        options.setdefault("lifespan", "off")
        options.setdefault("access_log", False)
        self.config = Config(app=app, interface=interface, http=parser, **options)  # type: ignore[arg-type]
        self.parser = parser
        self.app, self.interface = prepare_app(self.config)
        self.state = ServerState(self.config, self.app)
        self.protocol: Any = None
        self.transport = MemoryTransport()

    async def __aenter__(self) -> MemoryConnection:
        self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def open(self) -> None:
        self.protocol = protocol_class(self.parser)(self.state)
        self.transport.protocol = self.protocol
        self.protocol.connection_made(self.transport)

    @property
    def written(self) -> bytes:
        return bytes(self.transport.written)

    @property
    def closed(self) -> bool:
        return self.transport.closed

    async def send(self, data: bytes | list[bytes], *, settle: float = 5.0) -> None:
        """Feed ``data`` (a list: one read each) and let the server answer what it can."""
        reads = [data] if isinstance(data, bytes) else data
        for chunk in reads:
            if self.transport.closed:
                break
            # The transport's protocol: HTTP/2's once the preface was read (h2c).
            self.transport.protocol.data_received(chunk)
            await asyncio.sleep(0)
        await self.settle(settle)

    async def eof(self, *, settle: float = 5.0) -> None:
        """The client half-closes: as asyncio does, close unless eof_received says keep open."""
        if not self.transport.closed and not self.transport.protocol.eof_received():
            self.transport.close()
        await self.settle(settle)

    async def settle(self, limit: float = 5.0) -> None:
        """Wait (bounded) until no app task is left running; apps blocked on input stay."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        idle_rounds = 0
        while idle_rounds < 3 and loop.time() < deadline:
            await asyncio.sleep(0)
            tasks = [task for task in self.state.tasks if not task.done()]
            if not tasks:
                idle_rounds += 1
                continue
            idle_rounds = 0
            if self._stuck():
                return
            await asyncio.wait(tasks, timeout=min(0.05, max(deadline - loop.time(), 0)))

    def _stuck(self) -> bool:
        # An app waiting for body bytes that were never sent cannot progress in memory.
        protocol = self.transport.protocol
        streams = getattr(protocol, "streams", None)  # HTTP/2: every stream's cycle
        cycles = [getattr(s, "cycle", None) for s in streams.values()] if streams else []
        if not streams:
            cycles = [getattr(protocol, "cycle", None)]
        return all(_waits_for_body(cycle) for cycle in cycles)

    async def aclose(self) -> None:
        if not self.transport.closed:
            self.transport.closed = True
            self.transport.protocol.connection_lost(None)
        await self.settle(2.0)
        if self.interface == "wsgi":
            await self.app.shutdown()

    def responses(self) -> list[Response]:
        return parse_responses(self.written)


class WireFactory:
    """``wire(app, **options)``: a new in-memory client; ``wire.version`` says which."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = "2" if name == "h2" else "1.1"

    def __call__(self, app: Any, **options: Any) -> Any:
        if self.name == "h2":
            from tests.h2memconn import H2Wire

            return H2Wire(MemoryConnection("auto", app, **options))
        return Wire(MemoryConnection(self.name, app, **options))


def _waits_for_body(cycle: Any) -> bool:
    wake = getattr(cycle, "_wake", None)
    return wake is not None and not wake.is_set() and bool(cycle._more_body)


def parse_responses(data: bytes) -> list[Response]:
    """Every complete response in ``data`` (interim 1xx responses folded into the next)."""
    responses: list[Response] = []
    interim: list[int] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        lines = data[pos:end].split(b"\r\n")
        version, status, *reason = lines[0].split(b" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        response = Response(int(status), headers, b"", b"", b"".join(reason), version)
        pos = end + 4
        if response.status < 200:
            interim.append(response.status)
            continue
        length = response.header(b"content-length")
        if response.header(b"transfer-encoding") == b"chunked":
            parts = []
            while True:
                line_end = data.index(b"\r\n", pos)
                size = int(data[pos:line_end].split(b";")[0], 16)
                parts.append(data[line_end + 2 : line_end + 2 + size])
                pos = line_end + 2 + size + 2
                if size == 0:
                    break
            response.body = b"".join(parts)
        elif length is not None:
            response.body = data[pos : pos + int(length)]
            pos += int(length)
        elif response.status not in (204, 304):
            response.body = data[pos:]
            pos = len(data)
        response.raw = data[:pos]
        response.interim, interim = interim, []
        responses.append(response)
    return responses


class Wire(ResponseReader):
    """:class:`tests.rawhttp.RawClient`'s API over a :class:`MemoryConnection`.

    ``async with Wire(connect(app)) as client:`` then ``await client.send(raw)`` and read the
    answers in order with ``read_head``/``read_response``/``read_until_closed``, as a socket
    test would.  Like the ``serve`` fixture, it fails the test if the event loop reports an
    error (a callback that raised, a task whose exception was never retrieved).
    """

    def __init__(self, conn: MemoryConnection) -> None:
        self.conn = conn
        self.pos = 0
        self._chunked = False
        self.loop_errors: list[dict[str, Any]] = []
        self._handler: Any = None

    async def __aenter__(self) -> Wire:
        loop = asyncio.get_running_loop()
        self._handler = loop.get_exception_handler()
        loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))
        self.conn.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.conn.aclose()
        finally:
            asyncio.get_running_loop().set_exception_handler(self._handler)
        assert not self.loop_errors, f"the event loop reported errors: {self.loop_errors}"

    async def send(self, data: bytes | list[bytes]) -> None:
        await self.conn.send(data)

    def _unread(self) -> bytes:
        return self.conn.written[self.pos :]

    def _take_until(self, marker: bytes) -> bytes:
        rest = self._unread()
        at = rest.find(marker)
        if at < 0:
            raise AssertionError(f"no {marker!r} in what the server wrote: {rest!r}")
        self.pos += at + len(marker)
        return rest[: at + len(marker)]

    def _take(self, n: int) -> bytes:
        rest = self._unread()
        if len(rest) < n:
            raise AssertionError(f"{len(rest)} of {n} bytes written: {rest!r}")
        self.pos += n
        return rest[:n]

    def read_until_closed(self) -> bytes:
        """The rest of what the server wrote; the server must have closed the connection."""
        assert self.conn.closed, f"the server did not close; unread: {self._unread()!r}"
        data = self._unread()
        self.pos += len(data)
        return data

    def is_closed_by_server(self) -> bool:
        return self.conn.closed

    # --- The API both protocols' wires share (tests/h2memconn.py has HTTP/2's) ----------------

    version = "1.1"

    async def request(
        self,
        path: str = "/",
        *,
        method: bytes = b"GET",
        headers: Fields = (),
        body: bytes | list[bytes] | None = None,
        trailers: Fields = (),
    ) -> Response:
        """One request, answered: ``body`` as bytes is sent with a Content-Length, as a list
        chunked (one read per part), then the response is read (whole)."""
        length = len(body) if isinstance(body, bytes) else None
        ref = await self.start(path, method=method, headers=headers, length=length,
                               end=body is None)  # fmt: skip
        if isinstance(body, bytes):
            await self.send_body(ref, body)
        elif body is not None:
            for part in body:
                await self.send_body(ref, part, end=False)
            await self.send_body(ref, b"", trailers=trailers)
        return self.response(ref, head_request=method == b"HEAD")

    async def start(
        self,
        path: str = "/",
        *,
        method: bytes = b"POST",
        headers: Fields = (),
        length: int | None = None,
        end: bool = False,
    ) -> int:
        """Send a request head; unless ``end``, a body follows (chunked without ``length``)."""
        lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        if length is not None:
            lines += b"Content-Length: %d\r\n" % length
        elif not end:
            lines += b"Transfer-Encoding: chunked\r\n"
        self._chunked = length is None and not end
        await self.send(get(path, method=method, headers=lines))
        return 0

    async def send_body(
        self, ref: int, data: bytes, *, end: bool = True, trailers: Fields = ()
    ) -> None:
        if not self._chunked:
            await self.send(data)
            return
        out = b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        if end:
            out += b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in trailers) + b"\r\n"
        await self.send(out)

    def response(self, ref: int, *, head_request: bool = False) -> Response:
        """The next response (HTTP/1.1 answers in order, so ``ref`` is not needed)."""
        return self.read_response(head_request=head_request)
