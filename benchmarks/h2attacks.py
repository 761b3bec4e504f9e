"""Attack and malformed HTTP/2 inputs, and what a library does with them on its own.

Each case is raw frames (hyperframe + a plain HPACK encoder, which validates nothing, so the
bytes can carry what a well-behaved client library would refuse to send) written after a
valid client preface to a fresh server connection of one library. ``run_case`` records what
the library hands the app, what it queues to send (RST_STREAM, GOAWAY and their codes) and
whether it raises. Used by ``benchmarks.h2libs`` for its conformance table; RFC 9113 sections
and the CVEs are named in each case's ``expected``.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from benchmarks.h2servers import make

__all__ = ["CASES", "Case", "Outcome", "run_case"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()
CODES = {
    0: "NO_ERROR",
    1: "PROTOCOL_ERROR",
    2: "INTERNAL_ERROR",
    3: "FLOW_CONTROL_ERROR",
    5: "STREAM_CLOSED",
    6: "FRAME_SIZE_ERROR",
    7: "REFUSED_STREAM",
    8: "CANCEL",
    9: "COMPRESSION_ERROR",
    11: "ENHANCE_YOUR_CALM",
    13: "HTTP_1_1_REQUIRED",
}
CHUNK = 16384  # bytes handed to the library per simulated read (one TLS record)


@dataclass
class Outcome:
    requests: int = 0
    resets: dict[str, int] = field(default_factory=dict)
    goaway: str = ""
    error: str = ""
    acks: int = 0  # SETTINGS and PING acks queued
    out_bytes: int = 0
    fed: int = 0
    total: int = 0
    cpu_ms: float = 0.0
    rss_mib: float = 0.0
    credit: int = 0  # WINDOW_UPDATE increments queued
    meets: bool = False

    def summary(self) -> str:
        parts = [f"{'**yes**' if self.meets else '**no**'}: app sees {self.requests}"]
        for code, count in self.resets.items():
            parts.append(f"RST_STREAM {code}" + (f" x{count}" if count > 1 else ""))
        if self.goaway:
            parts.append(f"GOAWAY {self.goaway}")
        if self.error:
            parts.append(f"raises {self.error}")
        if self.credit:
            parts.append(f"grants {self.credit // 1024} KiB of window")
        if self.acks > 1:  # one is the ack of the client preface's SETTINGS
            parts.append(f"{self.acks} acks queued ({self.out_bytes // 1024} KiB)")
        if self.fed < self.total:
            parts.append(f"read {self.fed // 1024} of {self.total // 1024} KiB")
        if self.cpu_ms >= 5:
            parts.append(f"{self.cpu_ms:.0f} ms CPU")
        if self.rss_mib >= 4:
            parts.append(f"RSS +{self.rss_mib:.0f} MiB")
        return ", ".join(parts)


@dataclass
class Case:
    key: str
    title: str
    expected: str
    build: Callable[[], bytes | list[bytes]]  # a list: one read per element
    preface: bool = True
    answer: bool = False  # answer each request as it completes
    # Whether the library alone did what the server must; the default fits one bad request.
    meets: Callable[[Outcome], bool] = lambda o: (
        o.requests == 0 and bool(o.resets or o.goaway or o.error)
    )


def _block(headers: list[tuple[bytes, bytes]], encoder: hpack.Encoder | None = None) -> bytes:
    return (encoder or hpack.Encoder()).encode(headers, huffman=False)


def _get(
    path: bytes = b"/", extra: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"example.com"),
        (b":path", path),
        *(extra or []),
    ]


def _headers(
    stream_id: int, block: bytes, end_stream: bool = True, end_headers: bool = True
) -> bytes:
    flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
    return HeadersFrame(stream_id, data=block, flags=flags).serialize()


def _one(headers: list[tuple[bytes, bytes]]) -> Callable[[], bytes]:
    return lambda: _headers(1, _block(headers))


def _rapid_reset() -> bytes:
    encoder, out = hpack.Encoder(), []
    for i in range(2000):
        stream_id = 1 + 2 * i
        out.append(_headers(stream_id, _block(_get(), encoder)))
        out.append(RstStreamFrame(stream_id, error_code=8).serialize())
    return b"".join(out)


def _literal(name: bytes, value: bytes) -> bytes:
    # Literal header field without indexing, new name (RFC 7541 6.2.2), lengths < 127.
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def _continuation_flood() -> bytes:
    """HEADERS without END_HEADERS, then 16 MiB of CONTINUATION that never ends (2024)."""
    payload = _literal(b"x-f", b"v" * 100) * 154  # ~16 KiB of valid HPACK per frame
    out = [_headers(1, _block(_get()), end_headers=False)]
    out += [ContinuationFrame(1, data=payload).serialize()] * ((16 << 20) // len(payload))
    return b"".join(out)


def _continuation_empty() -> bytes:
    out = [_headers(1, _block(_get()), end_headers=False)]
    out += [ContinuationFrame(1, data=b"").serialize()] * 200_000
    return b"".join(out)


def _big_header() -> bytes:
    """One 1 MiB header value, across HEADERS + CONTINUATION (advertised limits are smaller)."""
    block = hpack.Encoder().encode([*_get(), (b"x-big", b"b" * (1 << 20))], huffman=False)
    frames = [_headers(1, block[:16384], end_headers=False)]
    rest = block[16384:]
    while rest:
        piece, rest = rest[:16384], rest[16384:]
        frames.append(
            ContinuationFrame(1, data=piece, flags=[] if rest else ["END_HEADERS"]).serialize()
        )
    return b"".join(frames)


def _table_size_update() -> bytes:
    # Dynamic table size update to 1 MiB (RFC 7541 6.3), above the 4096 the server advertised.
    update = b"\x3f" + bytes([0xE1, 0xFF, 0x3F])  # 31 + 1048545 = 1048576 as a 5-bit prefix int
    return _headers(1, update + _block(_get()))


def _concurrent_streams() -> bytes:
    encoder = hpack.Encoder()
    return b"".join(
        _headers(1 + 2 * i, _block(_get(), encoder), end_stream=False) for i in range(1000)
    )


def _data_beyond_window() -> bytes:
    head = _headers(1, _block([*_get(), (b"content-length", b"100000")]), end_stream=False)
    data = [DataFrame(1, data=b"d" * 16384).serialize() for _ in range(6)]  # 98,304 > 65,535
    return head + b"".join(data)


def _unread_upload() -> bytes:
    head = _headers(1, _block([*_get(), (b"content-length", b"61440")]), end_stream=False)
    return head + b"".join(DataFrame(1, data=b"u" * 15360).serialize() for _ in range(4))


def _window_update_overflow() -> bytes:
    return WindowUpdateFrame(0, window_increment=2**31 - 1).serialize()


def _stream_window_overflow() -> bytes:
    head = _headers(1, _block(_get()), end_stream=False)
    return head + WindowUpdateFrame(1, window_increment=2**31 - 1).serialize()


def _sequential() -> list[bytes]:
    encoder = hpack.Encoder()
    return [_headers(1 + 2 * i, _block(_get(), encoder)) for i in range(5000)]


def _flood(frame: Frame, count: int, prefix: bytes = b"") -> Callable[[], bytes]:
    return lambda: prefix + frame.serialize() * count


def _empty_data() -> bytes:
    post = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]
    head = _headers(1, _block(post), end_stream=False)
    return head + DataFrame(1, data=b"").serialize() * 100_000


def _bad_value(value: bytes) -> Callable[[], bytes]:
    return _one(_get(extra=[(b"x-a", value)]))


def _first(o: Outcome) -> bool:
    return bool(o.goaway or o.error)


CASES: list[Case] = [
    Case(
        "rapid_reset",
        "Rapid Reset: 2,000 x (HEADERS + RST_STREAM)",
        "GOAWAY ENHANCE_YOUR_CALM past a bounded rate (CVE-2023-44487)",
        _rapid_reset,
        meets=lambda o: bool(o.goaway) and o.requests < 2000,
    ),
    Case(
        "continuation_flood",
        "CONTINUATION flood: 16 MiB of headers, never END_HEADERS",
        "stop at the header list limit, keep memory flat (CVE-2024-27316 class)",
        _continuation_flood,
        meets=lambda o: bool(o.goaway or o.error) and o.fed < o.total,
    ),
    Case(
        "continuation_empty",
        "200,000 empty CONTINUATION frames",
        "bound the frame count (CVE-2024-27983 class)",
        _continuation_empty,
        meets=lambda o: bool(o.goaway or o.error) and o.fed < o.total,
    ),
    Case(
        "value_cr",
        "header value with CR",
        "malformed: RST_STREAM PROTOCOL_ERROR (9113 8.2.1)",
        _bad_value(b"a\rb"),
    ),
    Case(
        "value_lf",
        "header value with LF",
        "malformed (9113 8.2.1; h2 CVE-2025-57804)",
        _bad_value(b"a\nb"),
    ),
    Case("value_nul", "header value with NUL", "malformed (9113 8.2.1)", _bad_value(b"a\x00b")),
    Case(
        "uppercase",
        "uppercase header name `X-Upper`",
        "malformed (9113 8.2)",
        _one(_get(extra=[(b"X-Upper", b"1")])),
    ),
    Case(
        "connection",
        "`connection: keep-alive`",
        "malformed (9113 8.2.2)",
        _one(_get(extra=[(b"connection", b"keep-alive")])),
    ),
    Case(
        "transfer_encoding",
        "`transfer-encoding: chunked`",
        "malformed (9113 8.2.2)",
        _one(_get(extra=[(b"transfer-encoding", b"chunked")])),
    ),
    Case(
        "te_gzip",
        "`te: gzip`",
        "malformed: only `te: trailers` (9113 8.2.2)",
        _one(_get(extra=[(b"te", b"gzip")])),
    ),
    Case(
        "no_path",
        "GET without `:path`",
        "malformed (9113 8.3.1)",
        _one([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com")]),
    ),
    Case(
        "pseudo_after",
        "`:path` after a regular header",
        "malformed (9113 8.3)",
        _one([(b":method", b"GET"), (b":scheme", b"http"), (b"x-a", b"1"), (b":path", b"/")]),
    ),
    Case(
        "connect_path",
        "CONNECT with `:path`, no `:protocol`",
        "malformed (9113 8.5; 8441 4)",
        _one([(b":method", b"CONNECT"), (b":authority", b"example.com:443"), (b":path", b"/")]),
    ),
    Case(
        "authority_host",
        "`:authority` and a different `Host`",
        "SHOULD be malformed (9113 8.3.1); else the server picks `:authority`",
        _one(_get(extra=[(b"host", b"evil.example")])),
    ),
    Case(
        "even_stream",
        "HEADERS on stream 2 (server-initiated id)",
        "GOAWAY PROTOCOL_ERROR (9113 5.1.1)",
        lambda: _headers(2, _block(_get())),
    ),
    Case(
        "bad_preface",
        "bad preface: an HTTP/1.1 request",
        "close, no request (9113 3.4)",
        lambda: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        preface=False,
    ),
    Case(
        "window_overflow",
        "WINDOW_UPDATE on stream 0 past 2^31-1",
        "GOAWAY FLOW_CONTROL_ERROR (9113 6.9.1)",
        _window_update_overflow,
        meets=_first,
    ),
    Case(
        "stream_window_overflow",
        "WINDOW_UPDATE on a stream past 2^31-1",
        "RST_STREAM FLOW_CONTROL_ERROR (9113 6.9.1)",
        _stream_window_overflow,
        meets=lambda o: bool(o.resets or o.goaway or o.error),
    ),
    Case(
        "data_beyond_window",
        "96 KiB of DATA into a 64 KiB window",
        "FLOW_CONTROL_ERROR (9113 6.9.1)",
        _data_beyond_window,
        meets=lambda o: bool(o.resets or o.goaway or o.error),
    ),
    Case(
        "unread_upload",
        "60 KiB of DATA to an app that has not read it",
        "no WINDOW_UPDATE until the app reads: the window holds the uploader back",
        _unread_upload,
        meets=lambda o: o.credit == 0 and not (o.goaway or o.error),
    ),
    Case(
        "streams_1000",
        "1,000 open streams at once",
        "REFUSED_STREAM past SETTINGS_MAX_CONCURRENT_STREAMS (9113 5.1.2)",
        _concurrent_streams,
        meets=lambda o: o.requests < 1000 and bool(o.resets or o.goaway or o.error),
    ),
    Case(
        "big_header",
        "one 1 MiB header value",
        "refuse past the header list limit (431 or reset)",
        _big_header,
    ),
    Case(
        "table_size",
        "HPACK table size update to 1 MiB",
        "COMPRESSION_ERROR (RFC 7541 4.2)",
        _table_size_update,
    ),
    Case(
        "sequential_5000",
        "5,000 ordinary GETs, one after another, on one connection",
        "answer all; a cap ends with GOAWAY NO_ERROR (graceful)",
        _sequential,
        answer=True,
        meets=lambda o: o.requests == 5000 or o.goaway == "NO_ERROR",
    ),
    Case(
        "settings_flood",
        "10,000 SETTINGS frames",
        "bound the acks (CVE-2019-9515)",
        _flood(SettingsFrame(0), 10_000),
        meets=_first,
    ),
    Case(
        "ping_flood",
        "10,000 PING frames",
        "bound the acks (CVE-2019-9512)",
        _flood(PingFrame(0, opaque_data=b"12345678"), 10_000),
        meets=_first,
    ),
    Case(
        "empty_data",
        "100,000 empty DATA frames on one stream",
        "bound them (CVE-2019-9518)",
        _empty_data,
        meets=_first,
    ),
]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _read_frames(data: bytes, outcome: Outcome) -> None:
    view, at = memoryview(data), 0
    while at + 9 <= len(data):
        frame, length = Frame.parse_frame_header(view[at : at + 9])
        frame.parse_body(view[at + 9 : at + 9 + length])
        at += 9 + length
        if isinstance(frame, RstStreamFrame):
            name = CODES.get(frame.error_code, str(frame.error_code))
            outcome.resets[name] = outcome.resets.get(name, 0) + 1
        elif isinstance(frame, GoAwayFrame):
            outcome.goaway = CODES.get(frame.error_code, str(frame.error_code))
        elif isinstance(frame, WindowUpdateFrame):
            outcome.credit += frame.window_increment
        elif isinstance(frame, (SettingsFrame, PingFrame)) and "ACK" in frame.flags:
            outcome.acks += 1


def run_case(case: Case, name: str) -> Outcome:
    """Feed ``case`` to a fresh server connection of library ``name``; record what it did."""
    built = case.build()
    if isinstance(built, bytes):
        payload = (PREFACE if case.preface else b"") + built
        pieces = [payload[at : at + CHUNK] for at in range(0, len(payload), CHUNK)]
    else:
        pieces = [PREFACE, *built] if case.preface else built
    lib = make(name, answer=case.answer, consume=False)
    outcome = Outcome(total=sum(map(len, pieces)))
    out = [lib.start()]
    rss = _rss_mib()
    begin = time.process_time()
    for piece in pieces:
        try:
            out.append(lib.feed(piece))
        except Exception as exc:  # recording what the library raises is the point
            outcome.error = f"{type(exc).__name__}"
            outcome.fed += len(piece)
            out.append(lib.conn.data_to_send())
            break
        outcome.fed += len(piece)
        if len(out[-1]) and _goaway_seen(out[-1:]):
            break
    outcome.cpu_ms = (time.process_time() - begin) * 1000
    outcome.rss_mib = _rss_mib() - rss
    outcome.requests = lib.requests
    data = b"".join(out)
    outcome.out_bytes = len(data)
    _read_frames(data, outcome)
    outcome.meets = case.meets(outcome)
    return outcome


def _goaway_seen(out: list[bytes]) -> bool:
    probe = Outcome()
    _read_frames(b"".join(out), probe)
    return bool(probe.goaway)
