"""Named regression tests for every class of issue 11, on both parsers, through ASGI and WSGI.

Each case is a raw request fed to an in-memory connection (the ``connect`` fixture: h11 and
httptools), once to an ASGI app and once to a WSGI app through the adapter.  Refused cases
name their status and prove the app never saw the request (nor a request smuggled behind it);
accepted cases name what the app must see.  The differential fuzzer
(tests/test_differential.py) finds new shapes; each one it finds gets a line here.
"""

from __future__ import annotations

from typing import Any

import pytest

H = b"Host: example.com\r\n"
CHUNKED = b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"

# (id, raw request, status).  The app is never called for these, and never for /smuggled.
REFUSED: list[tuple[str, bytes, int]] = [
    # Smuggling on the h11 path: bare LF in the last-chunk or trailer section.
    ("last-chunk-bare-lf", CHUNKED + b"0\r\n\n" + SMUGGLED, 400),
    ("trailer-bare-lf", CHUNKED + b"0\r\nX: a\n\n" + SMUGGLED, 400),
    ("trailer-bare-lf-after-crlf", CHUNKED + b"0\r\nX: a\r\n\n" + SMUGGLED, 400),
    ("trailer-bare-cr", CHUNKED + b"0\r\nX: a\rb\r\n\r\n" + SMUGGLED, 400),
    ("trailer-obs-fold", CHUNKED + b"0\r\nX: a\r\n b\r\n\r\n" + SMUGGLED, 400),
    ("chunk-size-trailing-space", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("last-chunk-trailing-space", CHUNKED + b"0 \r\n\r\n" + SMUGGLED, 400),
    ("chunk-size-trailing-tab", CHUNKED + b"5\t\r\nhello\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("chunk-ext-bare-cr", CHUNKED + b"5;a\rb\r\nhello\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("chunk-ext-nul", CHUNKED + b"5;a\x00\r\nhello\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("chunk-size-bare-lf", CHUNKED + b"5\nhello\r\n0\r\n\r\n" + SMUGGLED, 400),
    ("chunk-size-17-hex-digits", CHUNKED + b"00000000000000005\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-data-no-crlf", CHUNKED + b"5\r\nhelloXX0\r\n\r\n" + SMUGGLED, 400),
    ("trailer-host", CHUNKED + b"0\r\nHost: evil\r\n\r\n" + SMUGGLED, 400),
    ("trailer-content-length", CHUNKED + b"0\r\nContent-Length: 5\r\n\r\n" + SMUGGLED, 400),
    ("trailer-transfer-encoding", CHUNKED + b"0\r\nTransfer-Encoding: x\r\n\r\n", 400),
    ("trailer-too-large", CHUNKED + b"0\r\nX: " + b"v" * 70000 + b"\r\n\r\n", 431),
    # Request targets that are no RFC 9112 3.2 form, or the wrong form for the method.
    ("target-relative", b"GET foo/bar HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-query-only", b"GET ? HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("authority-form-outside-connect", b"GET example.com:443 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk-outside-options", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form-not-a-uri", b"GET s://]ufd/: HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form-bad-host", b"GET http://a b/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form-userinfo", b"GET http://u@a/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("fragment", b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("connect", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501),
    ("connect-origin-form", b"CONNECT / HTTP/1.1\r\n" + H + b"\r\n", 501),
    # Found by the fuzzer: the request line is checked by the policy on both parsers.
    ("connect-nul-in-target", b"CONNECT \x00/ HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("nul-in-target", b"GET /\x00 HTTP/1.1\r\n" + H + b"\r\n", 400),
    # Host grammar and singleton fields.
    ("host-with-space-slash-at", b"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n", 400),
    ("host-list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
    ("host-bracket-unclosed", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    ("host-port-not-digits", b"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", 400),
    ("content-type-twice", b"GET / HTTP/1.1\r\n" + H + b"Content-Type: a\r\n"
     b"Content-Type: b\r\n\r\n", 400),
    # Request line: one SP between parts, a version, a bounded method.
    ("two-spaces", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("http-0.9", b"GET /\r\n\r\n", 400),
    ("method-over-line-limit", b"A" * 9000 + b" / HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("field-over-8190", b"GET / HTTP/1.1\r\n" + H + b"X: " + b"v" * 8200 + b"\r\n\r\n", 431),
]  # fmt: skip

# Refused only with a non-default option.
REFUSED_WITH: list[tuple[str, bytes, int, dict[str, Any]]] = [
    ("underscore-refused", b"GET / HTTP/1.1\r\n" + H + b"X_A: b\r\n\r\n", 400,
     {"header_map": "refuse"}),
    ("field-over-limit", b"GET / HTTP/1.1\r\n" + H + b"X: " + b"v" * 200 + b"\r\n\r\n", 431,
     {"limit_request_field_size": 100}),
]  # fmt: skip

# (id, raw request, what the app sees: method, path, query, body, headers it must hold).
Expected = tuple[str, str, str, bytes, dict[str, str]]
ACCEPTED: list[tuple[str, bytes, Expected]] = [
    ("chunk-ext-bws", CHUNKED + b"5 ; name = value\r\nhello\r\n0\r\n\r\n",
     ("POST", "/c", "", b"hello", {})),
    ("chunk-ext-quoted", CHUNKED + b'5;a="b;c"\r\nhello\r\n0;x\r\nX-T: 1\r\n\r\n',
     ("POST", "/c", "", b"hello", {})),
    ("method-unknown-to-llhttp", b"BREW /pot HTTP/1.1\r\n" + H + b"\r\n",
     ("BREW", "/pot", "", b"", {})),
    ("method-any-tchar", b"X-Y.Z!~ / HTTP/1.1\r\n" + H + b"\r\n",
     ("X-Y.Z!~", "/", "", b"", {})),
    ("empty-line-before", b"\r\nGET /e HTTP/1.1\r\n" + H + b"\r\n",
     ("GET", "/e", "", b"", {})),
    ("ows-stripped", b"GET / HTTP/1.1\r\n" + H + b"X-A: \t a b \t \r\n\r\n",
     ("GET", "/", "", b"", {"x-a": "a b"})),
    ("content-length-trailing-space", b"POST /p HTTP/1.1\r\n" + H
     + b"Content-Length: 3 \r\n\r\nabc", ("POST", "/p", "", b"abc", {})),
    ("transfer-encoding-trailing-space", b"POST /p HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n",
     ("POST", "/p", "", b"abc", {})),
    ("upgrade-foo-keeps-body", b"POST /u HTTP/1.1\r\n" + H + b"Upgrade: foo\r\n"
     b"Connection: upgrade\r\nContent-Length: 5\r\n\r\nhello", ("POST", "/u", "", b"hello", {})),
    ("upgrade-h2c-keeps-body", b"POST /u HTTP/1.1\r\n" + H + b"Upgrade: h2c\r\n"
     b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
     b"Content-Length: 5\r\n\r\nhello", ("POST", "/u", "", b"hello", {})),
    ("upgrade-websocket-with-body-keeps-body", b"POST /u HTTP/1.1\r\n" + H
     + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 5\r\n\r\nhello",
     ("POST", "/u", "", b"hello", {})),
    ("absolute-form-authority-is-host", b"GET http://other.example:8080/p?q=1 HTTP/1.1\r\n"
     + H + b"\r\n", ("GET", "/p", "q=1", b"", {"host": "other.example:8080"})),
    ("absolute-form-no-path", b"GET https://other.example HTTP/1.1\r\n" + H + b"\r\n",
     ("GET", "/", "", b"", {"host": "other.example"})),
    ("asterisk-options", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
     ("OPTIONS", "*", "", b"", {})),
    ("underscore-dropped", b"GET / HTTP/1.1\r\n" + H + b"X_Forwarded_For: 6.6.6.6\r\n"
     b"X-Forwarded-For: 1.2.3.4\r\n\r\n",
     ("GET", "/", "", b"", {"x-forwarded-for": "1.2.3.4"})),
    ("host-ipv6", b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n",
     ("GET", "/", "", b"", {"host": "[::1]:8000"})),
    # The httptools tokenizer renames framing fields for llhttp: a client's own look-alike
    # names must stay what they are.
    ("look-alike-framing-names", b"GET /l HTTP/1.1\r\n" + H + b"X-ntent-Length: 5\r\n"
     b"x-ansfer-encoding: chunked\r\n\r\n",
     ("GET", "/l", "", b"", {"x-ntent-length": "5", "x-ansfer-encoding": "chunked"})),
    ("host-ipv6-zone", b"GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]:8000\r\n\r\n",
     ("GET", "/", "", b"", {"host": "[fe80::1%25eth0]:8000"})),
    ("host-empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", ("GET", "/", "", b"", {"host": ""})),
    ("method-5000-bytes", b"A" * 5000 + b" / HTTP/1.1\r\n" + H + b"\r\n",
     ("A" * 5000, "/", "", b"", {})),
]  # fmt: skip


class Recorder:
    """One record per request: (method, path, query, body, {header: value})."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.seen: list[tuple[str, str, str, bytes, dict[str, str]]] = []

    def app(self) -> Any:
        return self._asgi if self.interface == "asgi3" else self._wsgi

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in scope["headers"]}
        query = scope["query_string"].decode("latin-1")
        self.seen.append((scope["method"], scope["path"], query, body, headers))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        headers = {
            key[5:].lower().replace("_", "-"): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        record = (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"])
        self.seen.append((*record, body, headers))
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]


INTERFACES = ["asgi3", "wsgi"]


def _refused_cases() -> list[Any]:
    cases = [pytest.param(raw, status, {}, id=name) for name, raw, status in REFUSED]
    cases += [pytest.param(raw, st, opts, id=name) for name, raw, st, opts in REFUSED_WITH]
    return cases


@pytest.mark.parametrize("interface", INTERFACES)
@pytest.mark.parametrize(("raw", "status", "options"), _refused_cases())
async def test_refused(
    connect: Any, interface: str, raw: bytes, status: int, options: dict[str, Any]
) -> None:
    recorder = Recorder(interface)
    for reads in ([raw], [raw[i : i + 7] for i in range(0, len(raw), 7)]):
        async with connect(recorder.app(), interface=interface, **options) as conn:
            await conn.send(reads)
            responses = conn.responses()
            assert [r.status for r in responses][-1:] == [status], conn.written[:300]
            assert conn.closed
        # Body-stage refusals may reach the app for the request itself, never for what
        # was smuggled behind it; head-stage refusals never reach it.
        assert all(path != "/smuggled" for _, path, *_ in recorder.seen)
        if not raw.startswith(CHUNKED):
            assert recorder.seen == []


@pytest.mark.parametrize("interface", INTERFACES)
@pytest.mark.parametrize(
    ("raw", "expected"), [pytest.param(raw, exp, id=name) for name, raw, exp in ACCEPTED]
)
async def test_accepted(connect: Any, interface: str, raw: bytes, expected: Expected) -> None:
    after = b"GET /after HTTP/1.1\r\n" + H + b"\r\n"
    for reads in ([raw + after], [raw[:9], raw[9:] + after[:5], after[5:]]):
        recorder = Recorder(interface)
        async with connect(recorder.app(), interface=interface) as conn:
            await conn.send(reads)
            assert [r.status for r in conn.responses()] == [200, 200], conn.written[:300]
        assert len(recorder.seen) == 2
        method, path, query, body, headers = recorder.seen[0]
        want_method, want_path, want_query, want_body, want_headers = expected
        assert (method, path, query, body) == (want_method, want_path, want_query, want_body)
        for name, value in want_headers.items():
            assert headers.get(name) == value, (name, headers)
        assert not any("_" in name for name in headers if interface == "asgi3")
        assert recorder.seen[1][1] == "/after"  # the next request starts where it should


@pytest.mark.parametrize("interface", INTERFACES)
async def test_underscores_kept_with_header_map_dangerous(connect: Any, interface: str) -> None:
    recorder = Recorder(interface)
    raw = b"GET / HTTP/1.1\r\n" + H + b"X_A: b\r\n\r\n"
    async with connect(recorder.app(), interface=interface, header_map="dangerous") as conn:
        await conn.send(raw)
    headers = recorder.seen[0][4]
    if interface == "asgi3":
        assert headers["x_a"] == "b"
    else:
        # PEP 3333 bridges: the WSGI adapter keeps dropping them, whatever the option says.
        assert "x-a" not in headers


@pytest.mark.parametrize("interface", INTERFACES)
async def test_empty_line_after_a_post_body_on_keep_alive(connect: Any, interface: str) -> None:
    """RFC 9112 2.2: a client may send a CRLF after a body; the next request still starts."""
    recorder = Recorder(interface)
    raw = (
        b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc\r\n"
        b"GET /g HTTP/1.1\r\n" + H + b"\r\n"
    )
    async with connect(recorder.app(), interface=interface) as conn:
        await conn.send(raw)
        assert [r.status for r in conn.responses()] == [200, 200]
    assert [seen[1] for seen in recorder.seen] == ["/p", "/g"]


@pytest.mark.parametrize("interface", INTERFACES)
async def test_websocket_upgrade_with_ws_none_is_a_plain_request(
    connect: Any, interface: str
) -> None:
    """--ws none (and every WSGI app): the upgrade is ignored, the request served with its body."""
    recorder = Recorder(interface)
    raw = (
        b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    async with connect(recorder.app(), interface=interface, ws="none") as conn:
        await conn.send(raw + b"GET /next HTTP/1.1\r\n" + H + b"\r\n")
        assert [r.status for r in conn.responses()] == [200, 200]
    assert [(seen[1], seen[3]) for seen in recorder.seen] == [("/ws", b"hello"), ("/next", b"")]


@pytest.mark.parametrize("interface", INTERFACES)
def test_every_class_on_a_real_server(serve: Any, interface: str) -> None:
    """The same cases over real sockets, on each loop and parser (the ``serve`` fixture)."""
    from tests.support import raw_exchange, status_of

    recorder = Recorder(interface)
    with serve(recorder.app(), interface=interface) as server:
        for name, raw, status in REFUSED:
            answer = raw_exchange(server.port, raw)
            assert status_of(answer) == status, (name, answer[:200])
            assert b"connection: close\r\n" in answer, name
        assert all(seen[1] != "/smuggled" for seen in recorder.seen)
        for name, raw, expected in ACCEPTED:
            recorder.seen.clear()
            answer = raw_exchange(server.port, raw + b"GET /last HTTP/1.1\r\n" + H
                                  + b"Connection: close\r\n\r\n")  # fmt: skip
            assert answer.count(b"HTTP/1.1 200 ") == 2, (name, answer[:300])
            assert recorder.seen[0][:4] == expected[:4], name
