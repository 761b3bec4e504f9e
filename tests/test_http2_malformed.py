"""The malformed-request table (tests/test_malformed.py) over HTTP/2, as HEADERS frames.

Every case of the HTTP/1.1 table is either sent as the HTTP/2 request that carries the same
fault and answered with the same status on its stream, or listed in :data:`NOT_HTTP2` with
the reason it cannot be expressed in HTTP/2 framing.  A few are answered differently on
purpose (:data:`DIFFERENT`): RFC 9113 makes them *malformed* HTTP/2 requests (400), where
HTTP/1.1 answers another status.  The app is never called for a refused request, and the
connection goes on serving (a malformed request is a stream error, RFC 9113 8.1.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("h2")

from dualcorn.protocols.http2.events import ENHANCE_YOUR_CALM, NO_ERROR, PROTOCOL_ERROR
from tests.h2client import H2Client
from tests.support import ServerThread
from tests.test_malformed import MALFORMED, RecordingApp

Fields = list[tuple[bytes, bytes]]


def _request(*extra: tuple[bytes, bytes], method: bytes = b"GET", path: bytes = b"/",
             authority: bytes | None = b"example.com") -> Fields:  # fmt: skip
    fields = [(b":method", method), (b":scheme", b"http"), (b":path", path)]
    if authority is not None:
        fields.append((b":authority", authority))
    return fields + list(extra)


# id -> (the HTTP/2 request with the same fault, the status)
HTTP2: dict[str, tuple[Fields, int]] = {
    "bare-lf-one-line": (_request((b"x-a", b"a\nX: y")), 400),
    "bare-cr-in-value": (_request((b"x-a", b"a\rb")), 400),
    "cl-and-te": (
        _request((b"content-length", b"5"), (b"transfer-encoding", b"chunked"), method=b"POST"),
        400,
    ),
    "te-and-cl": (
        _request((b"transfer-encoding", b"chunked"), (b"content-length", b"5"), method=b"POST"),
        400,
    ),
    "cl-plus": (_request((b"content-length", b"+5"), method=b"POST"), 400),
    "cl-hex": (_request((b"content-length", b"0x5"), method=b"POST"), 400),
    "cl-negative": (_request((b"content-length", b"-1"), method=b"POST"), 400),
    "cl-list": (_request((b"content-length", b"5, 5"), method=b"POST"), 400),
    "cl-twice-same": (
        _request((b"content-length", b"5"), (b"content-length", b"5"), method=b"POST"),
        400,
    ),
    "cl-twice-different": (
        _request((b"content-length", b"5"), (b"content-length", b"6"), method=b"POST"),
        400,
    ),
    "te-gzip-chunked": (_request((b"transfer-encoding", b"gzip, chunked"), method=b"POST"), 400),
    "te-identity": (_request((b"transfer-encoding", b"identity"), method=b"POST"), 400),
    "te-twice": (
        _request(
            (b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked"), method=b"POST"
        ),
        400,
    ),
    "ctl-in-value": (_request((b"x-a", b"a\x01b")), 400),
    "del-in-value": (_request((b"x-a", b"a\x7fb")), 400),
    "nul-in-value": (_request((b"x-a", b"a\x00b")), 400),
    "obs-fold": (_request((b"x-a", b"a\r\n b")), 400),
    "obs-fold-tab": (_request((b"x-a", b"a\r\n\tb")), 400),
    "missing-host": (_request(authority=None), 400),
    "two-hosts": (_request((b"host", b"a"), (b"host", b"b"), authority=None), 400),
    "space-before-colon": (_request((b"x-a ", b"b")), 400),
    "bad-method": (_request(method=b"G(T"), 400),
    "nul-in-target": (_request(path=b"/\x00"), 400),
    "target-too-long": (_request(path=b"/" + b"a" * 9000), 414),
    "too-many-fields": (_request(*[(b"x-%d" % i, b"v") for i in range(120)]), 431),
    "head-too-large": (_request((b"x-big", b"v" * 70000)), 431),
}
# RFC 9113 8.2.2: Transfer-Encoding is connection-specific, so any HTTP/2 request that carries
# it is malformed (400); HTTP/1.1 answers a coding it does not implement with 501.
DIFFERENT = {"te-gzip-chunked", "te-identity", "te-twice"}
NOT_HTTP2 = {
    "bare-lf": "HPACK delimits fields by length: there are no line ends to get wrong",
    "te-http10": "there is no HTTP version in an HTTP/2 request",
    "http-2.0": "the version is the connection's, not the request's",
    "http-1.2": "the version is the connection's, not the request's",
    "no-colon": "HPACK carries the name and value apart",
    "garbage-line": "there is no request line",
    "bad-chunk-size": "HTTP/2 has no chunked coding: DATA frames carry the body",
}
# Requests that RFC 9113 calls malformed are reset with PROTOCOL_ERROR after the response when
# the client is still sending; the ones the shared policy refuses, with NO_ERROR (8.1).
MALFORMED_BY_RFC9113 = {
    "bare-lf-one-line", "bare-cr-in-value", "cl-and-te", "te-and-cl", "cl-plus", "cl-hex",
    "cl-negative", "cl-list", "cl-twice-different", "te-gzip-chunked", "te-identity",
    "te-twice", "nul-in-value", "obs-fold", "obs-fold-tab", "missing-host", "two-hosts",
    "space-before-colon", "nul-in-target",
}  # fmt: skip
# The zttp engine (--http2-engine zttp): zttp itself refuses a method that is not a token and
# control bytes in values as malformed (RFC 9113 8.2.1 lets it), so the reset after the 400
# is PROTOCOL_ERROR; and it ends the connection (GOAWAY ENHANCE_YOUR_CALM) on a header list
# past its fixed 64 KiB, where h2 answers 431 on the stream (docs/http2.md, the engines).
ZTTP_MALFORMED = {"bad-method", "ctl-in-value", "del-in-value"}
ZTTP_CONNECTION_ERROR = {"head-too-large"}


def test_every_http1_case_is_covered() -> None:
    ids = {case for case, _, _ in MALFORMED}
    assert ids == set(HTTP2) | set(NOT_HTTP2)
    assert not set(HTTP2) & set(NOT_HTTP2)
    statuses = {case: status for case, _, status in MALFORMED}
    for case, (_, status) in HTTP2.items():
        if case not in DIFFERENT:
            assert status == statuses[case], case


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ServerThread, RecordingApp]]:
    app = RecordingApp()
    with ServerThread(app) as running:
        yield running, app


@pytest.mark.parametrize("case", sorted(HTTP2))
@pytest.mark.parametrize("end", [True, False], ids=["whole", "body-follows"])
def test_refused_over_http2(
    server: tuple[ServerThread, Any], case: str, end: bool, h2_engine: str
) -> None:
    running, app = server
    fields, status = HTTP2[case]
    before = len(app.calls)
    with H2Client(running.port) as client:
        if h2_engine == "zttp" and case in ZTTP_CONNECTION_ERROR:
            client.raw_headers(fields, end=end)
            assert client.wait_goaway().error_code == ENHANCE_YOUR_CALM
            assert app.calls[before:] == []
            return
        sid = client.raw_headers(fields, end=end)
        [result] = client.wait(sid)
        assert result.status == status
        if not end:  # the client was still sending: the stream is reset after the answer
            malformed = case in MALFORMED_BY_RFC9113
            malformed |= h2_engine == "zttp" and case in ZTTP_MALFORMED
            expected = PROTOCOL_ERROR if malformed else NO_ERROR
            assert result.reset == expected
        assert client.goaway is None  # a stream error, not a connection error
        good = client.get("/after")
        assert good.status == 200
    assert app.calls[before:] == ["/after"]


def test_body_longer_than_content_length(server: tuple[ServerThread, Any]) -> None:
    """RFC 9113 8.1.1: DATA that does not add up to Content-Length is malformed: the stream
    is reset with PROTOCOL_ERROR, and the connection (and its window) serves on."""
    running, _ = server
    with H2Client(running.port) as client:
        client.receive_once()
        # 20 x 32,000 bytes: more than the connection window, were the refused bytes kept.
        for _ in range(20):
            sid = client.request(
                "/", method="POST", headers=[("content-length", "20000")], end=False
            )
            client.conn.send_data(sid, b"x" * 16000)
            client.conn.send_data(sid, b"x" * 16000)
            client.flush()
            [result] = client.wait(sid)
            assert result.reset == PROTOCOL_ERROR
        assert client.goaway is None
        good = client.request("/after", method="POST", body=b"y" * 100_000)
        assert client.wait(good)[0].status == 200
