"""HTTP/2 pieces on bytes (layer 1): the flood guard, the frame layer's events, the request
head.  Frames are fed whole and one byte at a time."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("h2")

import h2.config
import h2.connection
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
)

from dualcorn import Config
from dualcorn.errors import ProtocolError
from dualcorn.protocols.http2 import events as ev
from dualcorn.protocols.http2.engine import H2Engine
from dualcorn.protocols.http2.limits import CONTROL_BURST, FloodGuard, H2Limits
from dualcorn.protocols.http2.request import Malformed, checked_request_head, h2_request_head
from dualcorn.protocols.state import ServerState

# RFC 9113 3.4: the client preface is the magic string and a SETTINGS frame.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()


def limits(**options: Any) -> H2Limits:
    return H2Limits(ServerState(Config(app="x:y", **options), None))


def feed(guard: FloodGuard, data: bytes, one_byte: bool) -> str | None:
    if not one_byte:
        return guard.scan(data, 0.0)
    for index in range(len(data)):
        reason = guard.scan(data[index : index + 1], 0.0)
        if reason is not None:
            return reason
    return None


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "bytewise"])
def test_guard_counts_pings_but_not_acks(one_byte: bool) -> None:
    ping = PingFrame(0)
    ping.opaque_data = b"12345678"
    ack = PingFrame(0, flags=["ACK"])
    ack.opaque_data = b"12345678"
    guard = FloodGuard(limits(), 0.0)
    assert feed(guard, PREFACE + ack.serialize() * (CONTROL_BURST + 5), one_byte) is None
    assert feed(guard, ping.serialize() * CONTROL_BURST, one_byte) is None
    assert feed(guard, ping.serialize(), one_byte) is not None


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "bytewise"])
def test_guard_bounds_a_header_block_across_continuations(one_byte: bool) -> None:
    bounded = limits(limit_request_head=4096)  # a block may reach 8192 bytes
    headers = HeadersFrame(1)
    headers.data = b"\x82" * 1000
    more = ContinuationFrame(1)
    more.data = b"\x82" * 1000
    guard = FloodGuard(bounded, 0.0)
    assert feed(guard, PREFACE + headers.serialize() + more.serialize() * 7, one_byte) is None
    assert feed(guard, more.serialize(), one_byte) is not None
    # A block that ends resets the count for the next one.
    guard = FloodGuard(bounded, 0.0)
    done = ContinuationFrame(1, flags=["END_HEADERS"])
    done.data = b"\x82" * 1000
    assert feed(guard, PREFACE + headers.serialize() + done.serialize(), one_byte) is None
    assert feed(guard, headers.serialize() + more.serialize() * 7, one_byte) is None


class Recorder:
    """A FrameObserver that writes down what the guard tells it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []

    def headers_frame(self, stream_id: int, flags: int) -> None:
        self.seen.append(("headers", stream_id, flags))

    def data_frame(self, stream_id: int, length: int, flags: int) -> None:
        self.seen.append(("data", stream_id, length))

    def padding(self, stream_id: int, size: int) -> None:
        self.seen.append(("padding", stream_id, size))


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "bytewise"])
def test_guard_tells_its_observer_each_frame_once(one_byte: bool) -> None:
    """The zttp engine keeps its windows from the frame headers the guard reads: the same
    account whether a frame arrives whole or a byte at a time (the pad length byte of a padded
    DATA frame may come in a later read than its header)."""
    headers = HeadersFrame(1, flags=["END_HEADERS"])
    headers.data = b"\x82"
    data = DataFrame(1, flags=["PADDED"])
    data.data = b"hello"
    data.pad_length = 10
    trailers = HeadersFrame(1, flags=["END_HEADERS", "END_STREAM"])
    trailers.data = b"\x82"
    ping = PingFrame(0)
    ping.opaque_data = b"12345678"
    wire = headers.serialize() + ping.serialize() + data.serialize() + trailers.serialize()
    recorder = Recorder()
    guard = FloodGuard(limits(), 0.0, recorder)
    assert feed(guard, PREFACE + wire, one_byte) is None
    assert recorder.seen == [
        ("headers", 1, 0x4),
        ("data", 1, 16),  # RFC 9113 6.1: the pad length byte and the padding count
        ("padding", 1, 11),
        ("headers", 1, 0x5),
    ]


def test_guard_refills_with_time() -> None:
    settings = SettingsFrame(0).serialize()
    guard = FloodGuard(limits(), 0.0)
    assert guard.scan(PREFACE + settings * CONTROL_BURST, 0.0) is None
    assert guard.scan(settings, 0.0) is not None
    guard = FloodGuard(limits(), 0.0)
    assert guard.scan(PREFACE + settings * CONTROL_BURST, 0.0) is None
    assert guard.scan(settings * 10, 1.0) is None  # a second later: 100 more allowed


def client_bytes(*requests: list[tuple[bytes, bytes]]) -> bytes:
    config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                       validate_outbound_headers=False,
                                       normalize_outbound_headers=False)  # fmt: skip
    client = h2.connection.H2Connection(config=config)
    client.initiate_connection()
    for index, fields in enumerate(requests):
        client.send_headers(1 + 2 * index, fields, end_stream=True)
    return client.data_to_send()


GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]


def test_engine_keeps_stream_errors_to_their_stream() -> None:
    engine = H2Engine(limits(http2_max_concurrent_streams=1).settings)
    engine.start()
    bad_length = [*GET, (b"content-length", b"x")]
    events = engine.receive(client_bytes(GET, bad_length, GET, GET))
    requests = [e for e in events if isinstance(e, ev.Request)]
    malformed = [e for e in events if isinstance(e, ev.Malformed)]
    # Past MAX_CONCURRENT_STREAMS (1 here) h2 would end the connection: the engine lets the
    # connection refuse the stream itself.  A malformed request is its stream's error alone.
    assert [r.stream_id for r in requests] == [1, 5, 7]
    assert [m.stream_id for m in malformed] == [3]
    assert "content-length" in malformed[0].reason


def test_engine_connection_errors_raise() -> None:
    engine = H2Engine(limits().settings)
    engine.start()
    with pytest.raises(ev.H2ConnectionError):
        engine.receive(b"GET / HTTP/1.1\r\n\r\n" + b"\x00" * 24)
    assert engine.bytes_to_send()  # the GOAWAY is queued


def head(*extra: tuple[bytes, bytes], path: bytes = b"/", method: bytes = b"GET",
         authority: bytes = b"example.com", **limits: Any) -> Any:  # fmt: skip
    fields = [(b":method", method), (b":scheme", b"https"), (b":path", path),
              (b":authority", authority), *extra]  # fmt: skip
    options = {"line_limit": 8190, "list_limit": 65536, "max_fields": 100,
               "underscores": "drop", **limits}  # fmt: skip
    return h2_request_head(fields, **options)


def test_request_head_from_pseudo_headers() -> None:
    request, facts = head((b"content-length", b"3"), method=b"POST", path=b"/a?b=1")
    assert request.method == b"POST" and request.target == b"/a?b=1" and request.version == b"2"
    assert request.headers == [(b"host", b"example.com"), (b"content-length", b"3")]
    assert facts.content_length == 3
    # A Host beside :authority (h2 checked that they agree) is not doubled.
    request, _ = head((b"host", b"example.com"))
    assert request.headers == [(b"host", b"example.com")]
    # The policy's own rules: underscores dropped, OPTIONS * allowed.
    request, _ = head((b"x_forwarded_for", b"1.2.3.4"))
    assert request.headers == [(b"host", b"example.com")]
    assert head(method=b"OPTIONS", path=b"*")[0].target == b"*"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"path": b"http://example.com/"}, 400),  # :path is never absolute-form
        ({"path": b"*"}, 400),  # asterisk-form only for OPTIONS
        ({"path": b"/" + b"a" * 9000}, 414),
        ({"method": b"GET /"}, 400),
        ({"list_limit": 100}, 431),
        ({"max_fields": 0}, 431),
        ({"authority": b"bad host"}, 400),
    ],
)
def test_request_head_refusals(kwargs: dict[str, Any], status: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        head(**kwargs)
    assert caught.value.status == status


def test_connect_is_not_served() -> None:
    # RFC 9113 8.5: a CONNECT carries :method and :authority only; the server opens no
    # tunnels (501, as over HTTP/1.1).
    fields = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    with pytest.raises(ProtocolError) as caught:
        h2_request_head(fields, line_limit=8190, list_limit=65536, max_fields=100,
                        underscores="drop")  # fmt: skip
    assert caught.value.status == 501 and not isinstance(caught.value, Malformed)


OK_PSEUDO = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"),
             (b":authority", b"a")]  # fmt: skip


@pytest.mark.parametrize(
    "fields",
    [
        [*OK_PSEUDO, (b"X-Upper", b"v")],
        [*OK_PSEUDO, (b"x:colon", b"v")],
        [*OK_PSEUDO, (b"", b"v")],
        [*OK_PSEUDO, (b"connection", b"close")],
        [*OK_PSEUDO, (b"keep-alive", b"5")],
        [*OK_PSEUDO, (b"proxy-connection", b"x")],
        [*OK_PSEUDO, (b"upgrade", b"websocket")],
        [*OK_PSEUDO, (b"transfer-encoding", b"chunked")],
        [*OK_PSEUDO, (b"te", b"gzip")],
        [*OK_PSEUDO, (b"x", b" edge")],
        [*OK_PSEUDO, (b"x", b"edge\t")],
        [*OK_PSEUDO, (b"x", b"a\x00b")],
        [*OK_PSEUDO, (b"x", b"a\rb")],
        [(b":method", b"GET"), (b"x", b"1"), (b":scheme", b"https"), (b":path", b"/"),
         (b":authority", b"a")],
        [*OK_PSEUDO, (b":status", b"200")],
        [*OK_PSEUDO, (b":protocol", b"websocket")],
        [*OK_PSEUDO, (b":path", b"/again")],
        [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"a")],
        [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b""), (b":authority", b"a")],
        [(b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a")],
        [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")],
        [*OK_PSEUDO, (b"host", b"b")],
        [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"host", b"a"),
         (b"host", b"a")],
    ],
)  # fmt: skip
def test_malformed_by_rfc9113(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(Malformed):
        h2_request_head(fields, line_limit=8190, list_limit=65536, max_fields=100,
                        underscores="drop")  # fmt: skip


def test_accepted_shapes() -> None:
    fields = [*OK_PSEUDO, (b"te", b"trailers"), (b"cookie", b"a=1"), (b"x", b""),
              (b"cookie", b"b=2"), (b"host", b"a")]  # fmt: skip
    request, _ = h2_request_head(fields, line_limit=8190, list_limit=65536, max_fields=100,
                                 underscores="drop")  # fmt: skip
    # RFC 9113 8.2.3: cookies sent apart reach the app as one field.
    assert request.headers == [(b"te", b"trailers"), (b"cookie", b"a=1; b=2"), (b"x", b""),
                               (b"host", b"a")]  # fmt: skip


def checked(*extra: tuple[bytes, bytes], path: bytes = b"/", method: bytes = b"GET",
            authority: bytes | None = b"example.com", ended: bool = False,
            **limits: Any) -> Any:  # fmt: skip
    """checked_request_head as the zttp engine calls it: :authority already the Host field."""
    fields = [*extra] if authority is None else [*extra, (b"host", authority)]
    options = {"line_limit": 8190, "list_limit": 65536, "max_fields": 100,
               "underscores": "drop", **limits}  # fmt: skip
    return checked_request_head(method, path, fields, ended=ended, **options)


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"path": b"http://example.com/"}, 400),
        ({"path": b"*"}, 400),
        ({"path": b"/" + b"a" * 9000}, 414),
        ({"path": b"/" + b"a" * 8177}, 414),  # the line "GET :path HTTP/1.1" is 8191 bytes
        ({"list_limit": 100}, 431),
        ({"max_fields": 0}, 431),
        ({"authority": b"bad host"}, 400),
        ({"path": b"/a b"}, 400),
    ],
)
def test_checked_head_refuses_what_the_full_check_refuses(
    kwargs: dict[str, Any], status: int
) -> None:
    """What zttp leaves to the server is refused with the status h2_request_head gives."""
    for check in (head, checked):
        with pytest.raises(ProtocolError) as caught:
            check(**kwargs)
        assert caught.value.status == status, check


def test_checked_head_shapes() -> None:
    request, facts = checked((b"content-length", b"3"), method=b"POST", path=b"/a?b=1")
    assert (request.method, request.target, request.version) == (b"POST", b"/a?b=1", b"2")
    assert request.headers == [(b"content-length", b"3"), (b"host", b"example.com")]
    assert facts.content_length == 3
    assert checked(path=b"/" + b"a" * 8176)[0].method == b"GET"  # the line is 8190 bytes
    assert checked(method=b"OPTIONS", path=b"*")[0].target == b"*"
    request, _ = checked((b"cookie", b"a=1"), (b"x_y", b"1"), (b"cookie", b"b=2"))
    # RFC 9113 8.2.3: cookies joined; the policy drops the underscore name.
    assert request.headers == [(b"cookie", b"a=1; b=2"), (b"host", b"example.com")]
    with pytest.raises(Malformed):  # RFC 9113 8.3.1: neither :authority nor Host
        checked(authority=None)
    with pytest.raises(Malformed):
        checked((b"host", b"example.com"))
    with pytest.raises(Malformed):  # RFC 9113 8.1.1: a length the DATA cannot fill
        checked((b"content-length", b"3"), method=b"POST", ended=True)


def test_both_heads_count_the_header_list_alike() -> None:
    """RFC 9113 6.5.2's size (name + value + 32 per field, pseudo-headers included) is the
    same whether request.py sees the pseudo-headers or zttp took them off."""
    extra = [(b"user-agent", b"x" * 40), (b"accept", b"*/*")]
    size = sum(len(n) + len(v) + 32 for n, v in [
        (b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"),
        (b":authority", b"example.com"), *extra])  # fmt: skip
    for check in (head, checked):
        check(*extra, list_limit=size)
        with pytest.raises(ProtocolError) as caught:
            check(*extra, list_limit=size - 1)
        assert caught.value.status == 431
