"""In-process CPU per request of dualcorn's HTTP/1.1 path, per tokenizer, with no socket.

``python -m benchmarks.h1_micro`` measures, for each ``--http`` tokenizer installed (h11,
httptools, zttp), the process CPU time (``time.process_time``) of:

- ``head``: the head path alone (request line split, the tokenizer's ``fields()``, the policy's
  ``check_head``), called in a tight loop on the same head bytes;
- ``request``: one whole request on the in-memory connection (``tests/memconn.py``): the bytes
  fed to ``data_received``, the ASGI hello app run on the loop, its answer written; with
  ``request_log`` the access log is on, set up as the server does (``--access-logfile
  /dev/null``: dualcorn's own handler and formatter).

Two heads: ``wrk`` (what the load generator sends: request line and Host) and ``browser``
(a dozen fields, as a browser sends).  Every number is the best of ``--repeat`` batches of
``--requests`` (the least disturbed by neighbours).  No socket, no load generator: this
isolates the Python work per request that the parser and policy own, where ``python -m
benchmarks`` measures the whole server.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.apps.asgi_hello import app as hello
from dualcorn.protocols.policy import check_head, split_request_line
from dualcorn.protocols.request_head import RequestHead

__all__ = ["HEADS", "main"]

HEADS = {
    "wrk": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    "browser": (
        b"GET /articles/2024/some-title?page=2&sort=new HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\n"
        b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
        b"Referer: https://example.com/articles/2024\r\n"
        b"Connection: keep-alive\r\n"
        b"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
        b"Upgrade-Insecure-Requests: 1\r\n"
        b"Sec-Fetch-Dest: document\r\n"
        b"Sec-Fetch-Mode: navigate\r\n"
        b"Sec-Fetch-Site: same-origin\r\n"
        b"Priority: u=0, i\r\n"
        b"\r\n"
    ),
}


def installed_parsers() -> list[str]:
    return [n for n in ("h11", "httptools", "zttp") if n == "h11" or importlib.util.find_spec(n)]


def _best(batch: Callable[[int], float], requests: int, repeat: int) -> float:
    """Microseconds of CPU per request: the best of ``repeat`` batches."""
    batch(min(requests, 2000))  # warm caches
    times = []
    for _ in range(repeat):
        gc.collect()
        times.append(batch(requests) / requests * 1e6)
    return min(times)


def _open(loop: asyncio.AbstractEventLoop, parser: str, **options: Any) -> Any:
    """An open in-memory connection (protocols are made inside a running loop)."""
    from tests.memconn import MemoryConnection

    async def make() -> MemoryConnection:
        conn = MemoryConnection(parser, hello, **options)
        conn.open()
        return conn

    return loop.run_until_complete(make())


def head_batch(parser: str, raw: bytes, loop: asyncio.AbstractEventLoop) -> Callable[[int], float]:
    conn = _open(loop, parser)
    protocol = conn.protocol
    line_end = raw.index(b"\r\n")
    line_limit, max_fields = protocol._line_limit, protocol._max_fields

    def run(n: int) -> float:
        fields = protocol.fields
        start = time.process_time()
        for _ in range(n):
            method, target, version = split_request_line(raw[:line_end], line_limit)
            check_head(
                RequestHead(method, target, version, fields(raw, version)),
                max_fields=max_fields,
                underscores="drop",
            )
        return time.process_time() - start

    return run


def request_batch(
    parser: str, raw: bytes, loop: asyncio.AbstractEventLoop, access_log: bool
) -> Callable[[int], float]:
    # One connection for every request: no keep-alive cap (nginx's 1000 by default).
    conn = _open(loop, parser, access_log=access_log, limit_keepalive_requests=None)
    protocol, written = conn.protocol, conn.transport.written

    async def drive(n: int) -> float:
        start = time.process_time()
        for _ in range(n):
            before = len(written)
            protocol.data_received(raw)
            while len(written) == before or protocol.cycle is not None:
                if conn.transport.closed:
                    raise RuntimeError(f"the server closed: {bytes(written[-300:])!r}")
                await asyncio.sleep(0)
            if len(written) > 1 << 20:
                del written[:]
        return time.process_time() - start

    return lambda n: loop.run_until_complete(drive(n))


def _access_handler() -> None:
    """The access log on at level info, as the server sets it up, written to /dev/null."""
    from dualcorn import Config
    from dualcorn.logs import configure_logging

    configure_logging(Config(app=hello, access_logfile=os.devnull, log_level="info"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.h1_micro", description=__doc__)
    parser.add_argument("--http", default=",".join(installed_parsers()))
    parser.add_argument("--head", default=",".join(HEADS), help="wrk, browser")
    parser.add_argument("--what", default="head,request", help="head, request, request_log")
    parser.add_argument("--requests", type=int, default=20000, help="per batch")
    parser.add_argument("--repeat", type=int, default=5, help="batches; the best is kept")
    args = parser.parse_args(argv)
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    whats = args.what.split(",")
    if "request_log" in whats:
        _access_handler()
    print(f"# Python {sys.version.split()[0]}, {type(loop).__module__}; CPU us per request, "
          f"best of {args.repeat} x {args.requests}")  # fmt: skip
    print(f"{'what':<12} {'head':<8} " + " ".join(f"{p:>10}" for p in args.http.split(",")))
    for what in whats:
        for head in args.head.split(","):
            raw = HEADS[head]
            cells = []
            for name in args.http.split(","):
                if what == "head":
                    batch = head_batch(name, raw, loop)
                else:
                    batch = request_batch(name, raw, loop, access_log=what == "request_log")
                cells.append(_best(batch, args.requests, args.repeat))
            print(f"{what:<12} {head:<8} " + " ".join(f"{c:>10.2f}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
