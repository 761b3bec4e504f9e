"""dualcorn's two HTTP/2 engines, in process: server CPU per request through the whole server.

``python -m benchmarks.h2engines`` (``--requests N --rounds R``) runs dualcorn's real
:class:`~dualcorn.protocols.http2.connection.H2Connection` (flood guard, engine, request head
and policy, stream, ASGI request cycle, a hello-world app) on an in-memory transport, once with
``--http2-engine h2`` and once with ``zttp``, taking turns round by round (``--app wsgi``: the
WSGI hello of ``benchmarks/apps/wsgi_hello.py`` through the adapter and its thread pool, whose
threads' CPU ``time.process_time`` counts too).  An ``h2`` client
encodes the requests beforehand (32 streams in flight, as ``h2load -m 32``); the timed part is
the server's: feeding the bytes and running the loop until every response is written.  The
figure is the median over rounds of process CPU time per request.  Unlike
``benchmarks.h2libs`` (the libraries alone) this is what a request costs dualcorn.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import h2.config
import h2.connection
import h2.settings

from dualcorn import Config
from dualcorn.adapters import prepare_app
from dualcorn.protocols.http2.connection import H2Connection
from dualcorn.protocols.http2.engines import zttp_installed
from dualcorn.protocols.state import ServerState

__all__ = ["main", "measure"]

CONCURRENT = 32  # streams per batch, as `h2load -m 32`
PER_CONNECTION = 3000  # below zttp's graceful GOAWAY (3,840 streams)
POST_BODY = b"x" * 1024
HEADERS = [
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) bench"),
    (b"accept", b"text/html,application/xhtml+xml,*/*;q=0.8"),
    (b"accept-encoding", b"gzip, deflate, br"),
]


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"Hello, world!"})


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> None:
        self.size += len(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _batches(count: int, post: bool) -> list[bytes]:
    """The client's bytes: the preface, then ``count`` requests in batches of CONCURRENT."""
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**30})
    client.increment_flow_control_window(2**30)
    client.remote_settings.max_concurrent_streams = 2**31 - 1
    client.remote_settings.initial_window_size = 2**20
    client.outbound_flow_control_window = 2**30
    batches = [client.data_to_send()]
    method = b"POST" if post else b"GET"
    for start in range(0, count, CONCURRENT):
        for _ in range(min(CONCURRENT, count - start)):
            sid = client.get_next_available_stream_id()
            fields = [(b":method", method), (b":scheme", b"http"),
                      (b":authority", b"localhost"), (b":path", b"/"), *HEADERS]  # fmt: skip
            client.send_headers(sid, fields, end_stream=not post)
            if post:
                client.send_data(sid, POST_BODY, end_stream=True)
        batches.append(client.data_to_send())
    return batches


WAIT_SECONDS = 10.0  # per batch of CONCURRENT requests; each takes milliseconds


WSGI_APP = "benchmarks.apps.wsgi_hello:app"


async def _serve(engine: str, batches: list[bytes], count: int, wsgi: bool = False) -> float:
    config = Config(app=WSGI_APP if wsgi else hello, lifespan="off", access_log=False,  # type: ignore[arg-type]
                    http2_engine=engine, limit_keepalive_requests=None,
                    interface="wsgi" if wsgi else "auto")  # fmt: skip
    app, _interface = prepare_app(config)
    state = ServerState(config, app)  # the adapter's capabilities are read from the app
    conn = H2Connection(state)
    transport = _Transport()
    started = time.process_time()
    conn.connection_made(transport)
    conn.data_received(batches[0])  # the preface and SETTINGS
    done = 0
    loop = asyncio.get_running_loop()
    reached = asyncio.Event()
    if wsgi:
        # The app threads answer in their own time: wait for the batch's last answer on an
        # event, not in a loop of sleep(0) whose spinning would be counted as the server's.
        state.on_request_done.append(
            lambda: state.total_requests >= done and reached.set()  # type: ignore[func-returns-value]
        )
    for batch in batches[1:]:
        conn.data_received(batch)
        done = min(done + CONCURRENT, count)
        if wsgi:
            if state.total_requests < done:
                reached.clear()
                await asyncio.wait_for(reached.wait(), WAIT_SECONDS)
            continue
        # A batch the server cannot finish (bodies past the connection window, which this
        # client never reopens) would otherwise spin here for ever.
        deadline = loop.time() + WAIT_SECONDS
        while state.total_requests < done:  # the apps finish within a few loop turns
            if loop.time() > deadline:
                raise RuntimeError(
                    f"{engine}: {state.total_requests} of {done} requests answered after "
                    f"{WAIT_SECONDS} s; a POST body past the connection window?"
                )
            await asyncio.sleep(0)
    spent = time.process_time() - started
    transport.close()
    conn.connection_lost(None)
    await asyncio.sleep(0)
    shutdown = getattr(app, "shutdown", None)
    if wsgi and shutdown is not None:
        await shutdown()  # the adapter's thread pool
    return spent


def measure(engine: str, requests: int, post: bool, wsgi: bool = False) -> float:
    """Microseconds of server CPU per request, over ``requests`` on fresh connections."""
    loop = asyncio.new_event_loop()
    try:
        spent = 0.0
        left = requests
        while left > 0:
            count = min(left, PER_CONNECTION)
            batches = _batches(count, post)
            spent += loop.run_until_complete(_serve(engine, batches, count, wsgi))
            left -= count
    finally:
        loop.close()
    return spent / requests * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.h2engines")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--app", choices=("asgi", "wsgi"), default="asgi")
    parser.add_argument("--engine", choices=("h2", "zttp"), help="one engine (default: both)")
    parser.add_argument("--get-only", action="store_true", help="skip the POST rounds")
    args = parser.parse_args(argv)
    wsgi = args.app == "wsgi"
    engines = ["h2", "zttp"] if zttp_installed() else ["h2"]
    if args.engine:
        engines = [args.engine]
    for post in (False,) if args.get_only else (False, True):
        figures: dict[str, list[float]] = {engine: [] for engine in engines}
        for _ in range(args.rounds):
            for engine in engines:
                figures[engine].append(measure(engine, args.requests, post, wsgi))
        name = "POST 1 KiB" if post else "GET"
        for engine in engines:
            values = figures[engine]
            print(f"{name:10} {engine:5} {statistics.median(values):7.1f} us/request "
                  f"(min {min(values):.1f}, max {max(values):.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
