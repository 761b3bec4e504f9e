"""Test support: a real server in a thread, raw-socket clients, an in-memory transport."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx

from dualcorn import Config, Server


class ServerThread:
    """A real dualcorn server on 127.0.0.1:0 in a background thread.

    Any exception the event loop reports (a callback that raised, a task never retrieved) is
    recorded and fails the test when the server closes.
    """

    def __init__(self, app: Any, **options: Any) -> None:
        options.setdefault("port", 0)
        options.setdefault("interface", "asgi3")
        options.setdefault("lifespan", "off")
        self.config = Config(app=app, **options)
        self.server = Server(self.config)
        self.loop_errors: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._closed = False

    def _run(self) -> None:
        from dualcorn.loops import loop_factory

        try:
            with asyncio.Runner(loop_factory=loop_factory(self.config.loop)) as runner:
                runner.get_loop().set_exception_handler(
                    lambda loop, context: self.loop_errors.append(context)
                )
                runner.run(self.server.serve())
        except BaseException as exc:
            self.error = exc
            self.server.started.set()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self.server.started.wait(10):
            raise RuntimeError("the server did not start within 10 s")
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.server.stop()
        self._thread.join(15)
        assert not self._thread.is_alive(), "the server did not stop within 15 s"
        assert not self.loop_errors, f"the event loop reported errors: {self.loop_errors}"

    @property
    def url(self) -> str:
        return self.server.addresses[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def http_client(protocol: str = "1.1", **options: Any) -> httpx.Client:
    """httpx over HTTP/1.1, or for ``protocol`` "2" over HTTP/2 with prior knowledge (h2c),
    as the ``@over_both`` tests ask (tests/conftest.py)."""
    h2 = protocol == "2"
    options.setdefault("timeout", 10)
    return httpx.Client(http1=not h2, http2=h2, **options)


def raw_exchange(
    port: int, data: bytes, *, one_byte_at_a_time: bool = False, timeout: float = 5.0
) -> bytes:
    """Send ``data`` on a fresh connection; return all bytes received until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if one_byte_at_a_time:
            for i in range(len(data)):
                try:
                    sock.sendall(data[i : i + 1])
                except OSError:
                    break  # the server refused the request part-way and closed
        else:
            sock.sendall(data)
        return read_until_closed(sock, timeout)


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    """The status code of the first response in ``response`` (0 when there is none)."""
    if not response.startswith(b"HTTP/1.1 "):
        return 0
    return int(response[9:12])


class MemoryTransport(asyncio.Transport):
    """An in-memory transport for byte-level connection tests (layer 2 of the test plan)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True
        self.protocol: Any = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.written += data

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        # An HTTP/1.1 connection that read the HTTP/2 preface hands itself over (h2c).
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol  # type: ignore[no-any-return]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )
