"""The traffic of ``python -m benchmarks.soak``: honest clients, and issue 12's attacks.

Honest clients loop until the deadline, each with a pause between operations so the load stays
moderate: ASGI and WSGI hello, a streamed (chunked) ASGI upload and a WSGI upload, a streamed
ASGI download, WebSocket echo sessions.  Each operation checks its answer; a failure (wrong
status or body, a timeout, a reset) counts as an error.

Attacks run at a low rate, every ``period`` seconds (slowloris continuously, a few connections
at a time), each bounded in bytes and time: slowloris heads, a permessage-deflate bomb, a ping
flood, a fragment flood, WSGI clients that never read a large response, abandoned requests,
pipelining clients that never read, a body in one-byte chunks.  What the server did to each is
tallied (``closed``, ``answered 408``, ``timed out``...), not counted as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

__all__ = ["ATTACKS", "HONEST", "Tally", "Targets"]

MIB = 1024 * 1024
TIMEOUT = 10.0  # every honest operation


@dataclass
class Targets:
    asgi: int  # ports
    wsgi: int
    deadline: float  # loop.time() at which everything stops
    period: float = 60.0  # seconds between two runs of one attack


@dataclass
class Tally:
    served: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    last_error: dict[str, str] = field(default_factory=dict)
    slowest: dict[str, float] = field(default_factory=dict)  # seconds, successful operations
    attacks: dict[str, Counter[str]] = field(default_factory=dict)

    def took(self, name: str, seconds: float) -> None:
        self.served[name] += 1
        self.slowest[name] = max(self.slowest.get(name, 0.0), seconds)

    def outcome(self, attack: str, what: str) -> None:
        self.attacks.setdefault(attack, Counter())[what] += 1


# --- A minimal HTTP/1.1 client on asyncio streams -------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server keeps the connection (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if "content-length" in fields:
        body = await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # no trailers from these apps
        body = b"".join(parts)
    else:
        body = await reader.read()
    return status, body, fields.get("connection", "").lower() != "close"


class Client:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, head: bytes, body: Sequence[bytes] = ()) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        try:
            writer.write(head)
            for part in body:
                writer.write(part)
                await writer.drain()
            await writer.drain()
            status, data, keep = await _read_response(reader)
        except BaseException:
            self.close()
            raise
        if not keep:
            self.close()
        return status, data

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n".encode()


def _chunked(parts: list[bytes]) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]


# --- Honest traffic -------------------------------------------------------------------------

UPLOAD = [os.urandom(16 * 1024)] * 16  # 256 KiB


async def _honest(name: str, targets: Targets, tally: Tally, pause: float,
                  operation: Callable[[Client], Awaitable[bool]], port: int) -> None:  # fmt: skip
    client = Client(port)
    loop = asyncio.get_running_loop()
    while loop.time() < targets.deadline:
        started = loop.time()
        try:
            async with asyncio.timeout(TIMEOUT):
                ok = await operation(client)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            ok = False
            tally.last_error[name] = repr(exc)[:120]
            client.close()
        if ok:
            tally.took(name, loop.time() - started)
        else:
            tally.errors[name] += 1
        await asyncio.sleep(pause)
    client.close()


async def _hello(client: Client) -> bool:
    return await client.request(_get("/")) == (200, b"Hello, world!")


async def _stream(client: Client) -> bool:
    status, body = await client.request(_get("/stream"))
    return status == 200 and len(body) == 256 * 1024


async def _upload_chunked(client: Client) -> bool:
    head = b"POST /upload HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n"
    return await client.request(head, _chunked(UPLOAD)) == (200, b"262144")


async def _upload_length(client: Client) -> bool:
    head = b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 262144\r\n\r\n"
    return await client.request(head, UPLOAD) == (200, b"262144")


async def _ws_session(targets: Targets, tally: Tally, pause: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < targets.deadline:
        started = loop.time()
        try:
            async with asyncio.timeout(TIMEOUT):
                async with connect(f"ws://127.0.0.1:{targets.asgi}/echo") as ws:
                    for i in range(20):
                        await ws.send(f"message {i}")
                        if await ws.recv() != f"message {i}":
                            raise ValueError("wrong echo")
            tally.took("ws_echo_session", loop.time() - started)
        except (OSError, TimeoutError, ValueError, Exception) as exc:  # websockets' own errors
            tally.errors["ws_echo_session"] += 1
            tally.last_error["ws_echo_session"] = repr(exc)[:120]
        await asyncio.sleep(pause)


def HONEST(targets: Targets, tally: Tally, pause: float) -> list[Awaitable[None]]:
    a, w = targets.asgi, targets.wsgi
    return [
        _honest("asgi_hello", targets, tally, pause, _hello, a),
        _honest("asgi_hello", targets, tally, pause, _hello, a),
        _honest("wsgi_hello", targets, tally, pause, _hello, w),
        _honest("wsgi_hello", targets, tally, pause, _hello, w),
        _honest("asgi_stream_256k", targets, tally, pause, _stream, a),
        _honest("asgi_upload_chunked_256k", targets, tally, pause, _upload_chunked, a),
        _honest("wsgi_upload_256k", targets, tally, pause, _upload_length, w),
        _ws_session(targets, tally, pause * 5),
    ]


# --- Attacks --------------------------------------------------------------------------------


async def _closed_by_server(reader: asyncio.StreamReader, limit: float) -> bytes | None:
    """Everything the server wrote until it closed, or None if it had not within ``limit``."""
    data = b""
    try:
        async with asyncio.timeout(limit):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        return None
    except OSError:
        pass  # a reset is a close too
    return data


def _verdict(answer: bytes | None) -> str:
    if answer is None:
        return "still open at the end"
    if answer.startswith(b"HTTP/1.1 "):
        return f"answered {answer[9:12].decode()} and closed"
    return "closed"


async def _slowloris_one(targets: Targets, tally: Tally) -> None:
    """A head that trickles one byte every 2 s (0.5 B/s) until the server gives up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", targets.asgi)
    writer.write(b"GET / HTTP/1.1\r\nHost: soak\r\n")
    closing = asyncio.ensure_future(_closed_by_server(reader, 60.0))
    for _ in range(30):
        done, _ = await asyncio.wait({closing}, timeout=2.0)
        if done:
            break
        writer.write(b"x")
    tally.outcome("slowloris heads (0.5 B/s)", _verdict(await closing))
    writer.close()


async def _slowloris(targets: Targets, tally: Tally) -> None:
    """Keeps five slowloris connections open all the time."""
    loop = asyncio.get_running_loop()

    async def lane() -> None:
        while loop.time() < targets.deadline - 45:
            with contextlib.suppress(OSError):
                await _slowloris_one(targets, tally)

    await asyncio.gather(*(lane() for _ in range(5)))


async def _ws_handshake(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise OSError(f"handshake refused: {head[:12]!r}")
    return reader, writer


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame (RFC 6455 5.2), masked with the all-zero key, so the payload is as is."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return struct.pack("!BB", first, 0x80 | len(payload)) + b"\0\0\0\0" + payload
    return struct.pack("!BBH", first, 0x80 | 126, len(payload)) + b"\0\0\0\0" + payload


async def _deflate_bomb(targets: Targets, tally: Tally) -> None:
    """Four 8 MiB messages of zeros, about 8 KiB each compressed, to an app that never reads."""
    zeros = bytes(8 * MIB)
    try:
        async with asyncio.timeout(30):
            async with connect(f"ws://127.0.0.1:{targets.asgi}/noread", max_size=None) as ws:
                for _ in range(4):
                    await ws.send(zeros)
                await asyncio.sleep(2)
        tally.outcome("deflate bomb (4 x 8 MiB)", "sent, app never read")
    except TimeoutError:
        tally.outcome("deflate bomb (4 x 8 MiB)", "server stopped reading (timeout)")
    except Exception as exc:
        tally.outcome("deflate bomb (4 x 8 MiB)", f"closed: {type(exc).__name__}")


async def _flood(targets: Targets, tally: Tally, name: str, path: str, data: bytes) -> None:
    """Send ``data`` on a WebSocket without reading anything, for at most 10 s."""
    try:
        _, writer = await _ws_handshake(targets.asgi, path)
    except (OSError, asyncio.IncompleteReadError) as exc:
        tally.outcome(name, f"handshake failed: {type(exc).__name__}")
        return
    try:
        async with asyncio.timeout(10):
            for i in range(0, len(data), 64 * 1024):
                writer.write(data[i : i + 64 * 1024])
                await writer.drain()
        tally.outcome(name, "all sent")
    except TimeoutError:
        tally.outcome(name, "server stopped reading (10 s)")
    except OSError:
        tally.outcome(name, "closed by server")
    finally:
        writer.close()


async def _ping_flood(targets: Targets, tally: Tally) -> None:
    ping = _frame(0x9, b"p" * 125)
    await _flood(targets, tally, "ping flood (4 MiB, never reads)", "/noread",
                 ping * (4 * MIB // len(ping)))  # fmt: skip


async def _fragment_flood(targets: Targets, tally: Tally) -> None:
    count = 100_000
    data = _frame(0x1, b"f", fin=False) + _frame(0x0, b"f", fin=False) * (count - 2)
    await _flood(targets, tally, "fragment flood (100k 1-byte fragments)", "/echo",
                 data + _frame(0x0, b"f"))  # fmt: skip


async def _hold(port: int, data: bytes, seconds: float) -> str:
    """Send ``data``, read (almost) nothing for ``seconds``, then hang up."""
    # A 4 KiB stream limit: the client stops reading once 8 KiB of the answer are buffered.
    _, writer = await asyncio.open_connection("127.0.0.1", port, limit=4096)
    writer.write(data)
    await asyncio.sleep(seconds)
    writer.close()
    return "held, then abandoned"


async def _wsgi_nonreaders(targets: Targets, tally: Tally) -> None:
    results = await asyncio.gather(*(_hold(targets.wsgi, _get("/big"), 10) for _ in range(2)))
    for result in results:
        tally.outcome("WSGI clients not reading 8 MiB (2, 10 s)", result)


async def _abandoned(targets: Targets, tally: Tally) -> None:
    async def one() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", targets.wsgi)
        writer.write(_get("/slow"))
        await writer.drain()
        writer.close()

    results = await asyncio.gather(*(one() for _ in range(100)), return_exceptions=True)
    for result in results:
        tally.outcome("abandoned WSGI requests (100)", "error" if result else "sent, hung up")


async def _pipeliners(targets: Targets, tally: Tally) -> None:
    data = _get("/pipeline") * 200
    results = await asyncio.gather(*(_hold(targets.asgi, data, 10) for _ in range(3)))
    for result in results:
        tally.outcome("pipelining non-readers (3 x 200 requests)", result)


async def _tiny_chunks(targets: Targets, tally: Tally) -> None:
    count = 50_000
    head = b"POST /upload HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n"
    client = Client(targets.asgi)
    try:
        async with asyncio.timeout(30):
            status, body = await client.request(head, [b"1\r\nc\r\n" * count + b"0\r\n\r\n"])
        tally.outcome("body in 50k one-byte chunks", f"answered {status} ({body[:10]!r})")
    except (OSError, asyncio.IncompleteReadError):
        tally.outcome("body in 50k one-byte chunks", "closed by server")
    except TimeoutError:
        tally.outcome("body in 50k one-byte chunks", "no answer in 30 s")
    finally:
        client.close()


async def _periodic(targets: Targets, tally: Tally, offset: float,
                    attack: Callable[[Targets, Tally], Awaitable[None]]) -> None:  # fmt: skip
    """Run ``attack`` at ``offset`` seconds and then every period, while 60 s remain."""
    loop = asyncio.get_running_loop()
    start = loop.time() + offset
    while start < targets.deadline - 45:
        await asyncio.sleep(max(0.0, start - loop.time()))
        try:
            await attack(targets, tally)
        except (OSError, asyncio.IncompleteReadError) as exc:
            tally.outcome(attack.__name__.strip("_"), f"failed: {type(exc).__name__}")
        start += targets.period


def ATTACKS(targets: Targets, tally: Tally) -> list[Awaitable[None]]:
    timed = (_deflate_bomb, _ping_flood, _fragment_flood, _wsgi_nonreaders, _abandoned,
             _pipeliners, _tiny_chunks)  # fmt: skip
    step = targets.period / len(timed)
    return [_slowloris(targets, tally)] + [
        _periodic(targets, tally, 5 + i * step, attack) for i, attack in enumerate(timed)
    ]
