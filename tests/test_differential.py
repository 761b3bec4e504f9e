"""A differential fuzzer: every parser must do exactly the same with every request.

A grammar-based generator builds valid requests; mutations turn them into the known request
smuggling shapes (CL/TE combinations, chunk-line variants, whitespace and control bytes in
every position, obs-fold, bare CR/LF in heads and trailers, duplicate and conflicting fields,
odd targets, methods and versions).  Each generated request is pipelined behind and ahead of
a valid one and fed, whole and split at random points, to h11 and httptools in memory; the
test fails if any of the runs differs in accept/refuse, status, anything the app saw, or where
the next request starts.

CI runs ``DUALCORN_FUZZ_EXAMPLES`` (default 20000) generated requests, derandomized and
without a database; ``DUALCORN_FUZZ_EXAMPLES=500000 pytest tests/test_differential.py`` is the
long run.  What a long run finds becomes a named case in tests/test_policy.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.differential import Observation, observe
from tests.memconn import PARSERS

EXAMPLES = int(os.environ.get("DUALCORN_FUZZ_EXAMPLES", "20000"))
pytestmark = [
    pytest.mark.skipif(len(PARSERS) < 2, reason="httptools is not installed"),
    # About 4 ms per generated request here: a bound with a wide margin, scaled to the run.
    pytest.mark.timeout(max(600, EXAMPLES // 20)),
]
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

BEFORE = b"GET /before?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
AFTER = b"POST /after HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
token = st.text(alphabet=TCHAR, min_size=1, max_size=12).map(str.encode)
methods = st.one_of(
    st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD"]),
    st.sampled_from([b"PROPFIND", b"MKCOL", b"QUERY", b"BREW", b"CONNECT", b"TRACE"]),
    token,
)
PCHAR = "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@%/"
paths = st.text(alphabet=PCHAR, max_size=20).map(lambda p: b"/" + p.encode())
queries = st.one_of(st.just(b""), st.text(alphabet=PCHAR + "?", max_size=12).map(str.encode))
hosts = st.sampled_from(
    [b"example.com", b"example.com:8080", b"127.0.0.1", b"[::1]:80", b"a-b.c", b"", b"x:"]
)


@st.composite
def targets(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["origin", "origin", "origin", "absolute", "asterisk"]))
    path, query = draw(paths), draw(queries)
    suffix = path + (b"?" + query if query else b"")
    if kind == "absolute":
        scheme = draw(st.sampled_from([b"http", b"https", b"HTTP"]))
        return scheme + b"://" + draw(hosts.filter(bool)) + suffix
    if kind == "asterisk":
        return b"*"
    return suffix


values = st.text(alphabet=TCHAR + ' \t"(),/:;<=>?@[]{}\x80\xff', max_size=16).map(
    lambda v: v.strip(" \t").encode("latin-1")
)
ows = st.sampled_from([b"", b" ", b" ", b"\t", b"  ", b" \t"])
field_names = st.one_of(
    token,
    st.sampled_from([b"Content-Type", b"Accept", b"Connection", b"Expect", b"Upgrade"]),
)


@st.composite
def chunked_body(draw: st.DrawFn) -> bytes:
    out = b""
    for data in draw(st.lists(st.binary(min_size=1, max_size=9), max_size=4)):
        ext = draw(st.sampled_from([b"", b";a=b", b' ; a = "q"', b";x", b";a=b;c"]))
        size = draw(st.sampled_from([b"%x", b"%X", b"0%x"])) % len(data)
        out += size + ext + b"\r\n" + data + b"\r\n"
    out += b"0" + draw(st.sampled_from([b"", b";e=1"])) + b"\r\n"
    for name, value in draw(st.lists(st.tuples(token, values), max_size=2)):
        out += name + b": " + value + b"\r\n"
    return out + b"\r\n"


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A valid request (by the grammar; the policy may still refuse it with a status)."""
    method = draw(methods)
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    lines = [method + b" " + draw(targets()) + b" " + version]
    if version == b"HTTP/1.1" or draw(st.booleans()):
        lines.append(b"Host: " + draw(hosts))
    for name, value in draw(st.lists(st.tuples(field_names, values), max_size=4)):
        # RFC 9112 5.1: field-line = field-name ":" OWS field-value OWS
        lines.append(name + b":" + draw(ows) + value + draw(ows))
    body_kind = draw(st.sampled_from(["none", "length", "chunked"]))
    body = b""
    if body_kind == "length":
        body = draw(st.binary(max_size=12))
        lines.append(b"Content-Length: %d" % len(body))
    elif body_kind == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        body = draw(chunked_body())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


NOISE = [b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x00", b"\x01", b"\x0b", b"\x7f", b"\x80",
         b"\xff", b"_", b"#", b",", b";", b":", b"=", b"\"", b"?", b"/", b"*", b"@", b"%", b"0",
         b"\r\n ", b"\r\n\t", b"\n\n", b"\r\n\r\n"]  # fmt: skip
SHAPES = [
    b"Content-Length: 3\r\n", b"Content-Length: 0\r\n", b"Content-Length: 3, 3\r\n",
    b"Content-Length:  3 \r\n", b"Content-Length: +3\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked \r\n", b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: xchunked\r\n", b"Transfer-Encoding:\tchunked\r\n", b"Host: a\r\n",
    b"Host: a b\r\n", b"Content-Type: a\r\n", b"X_A: b\r\n", b"Expect: 100-continue\r\n",
    b"Connection: close\r\n", b"Connection: keep-alive\r\n", b"Upgrade: h2c\r\n",
    b"Connection: upgrade\r\nUpgrade: websocket\r\n", b"X: a\r\n b\r\n", b"X : b\r\n",
    b" X: b\r\n", b"X:b\r\n", b"X: \x01\r\n", b"X-ntent-Length: 3\r\n",
    b"x-ansfer-encoding: chunked\r\n", b"CONTENT-LENGTH: 3\r\n", b"Content-Length:3\r\n",
]  # fmt: skip
CHUNK_LINES = [
    b"3 ", b"3\t", b"3;a\rb", b"3;a\x00", b"00000000000000003", b"0x3", b"3;a=\"b", b"-3",
    b"3 ;a", b"3;", b"3;a=", b"+3", b"3\n", b"",
]  # fmt: skip
LINES = [
    b"GET / HTTP/1.2", b"GET / HTTP/2.0", b"GET / HTTP/0.9", b"GET /", b"GET / http/1.1",
    b"GET / HTTP/1.10", b"GET / HTTP/1.1 ", b" GET / HTTP/1.1", b"GET  / HTTP/1.1",
    b"GET\t/ HTTP/1.1", b"get / HTTP/1.1", b"G-T / HTTP/1.1", b"GET * HTTP/1.1",
    b"OPTIONS * HTTP/1.1", b"GET foo HTTP/1.1", b"GET ? HTTP/1.1", b"GET // HTTP/1.1",
    b"GET http://a HTTP/1.1", b"GET http://a:80?x HTTP/1.1", b"GET s://]x/: HTTP/1.1",
    b"GET http://u@a/ HTTP/1.1", b"GET /a#b HTTP/1.1", b"GET /%00 HTTP/1.1",
    b"GET /\x80 HTTP/1.1", b"CONNECT a:443 HTTP/1.1", b"GET a:443 HTTP/1.1",
    b"POST / HTTP/1.0", b"GET http://[::1]:8/p HTTP/1.1", b"GET HTTP://A/ HTTP/1.1",
]  # fmt: skip
TRAILERS = [
    b"0\r\n\n", b"0\r\nX: a\n\n", b"0\r\nX: a\r\n\n", b"0\r\nHost: a\r\n\r\n",
    b"0\r\nContent-Length: 5\r\n\r\n", b"0\r\nX: a\r\n b\r\n\r\n", b"0\r\nX:\x01\r\n\r\n",
    b"0\r\n\r\r\n", b"0\r\nX\r\n\r\n", b"0 \r\n\r\n",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A generated request with one to three mutations toward a smuggling shape."""
    data = draw(requests())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["insert", "replace", "delete", "shape", "chunk", "trailer", "line"])
        )
        head_end = data.find(b"\r\n\r\n")
        if kind == "line":
            data = draw(st.sampled_from(LINES)) + data[data.find(b"\r\n") :]
        elif kind == "shape":
            at = data.find(b"\r\n") + 2
            data = data[:at] + draw(st.sampled_from(SHAPES)) + data[at:]
        elif kind == "chunk":
            body = (b"3" if True else b"") + b"\r\nabc\r\n0\r\n\r\n"
            line = draw(st.sampled_from(CHUNK_LINES))
            data = data[: head_end + 4] + line + body[1:] if head_end >= 0 else data
        elif kind == "trailer":
            if head_end >= 0:
                data = data[: head_end + 4] + b"2\r\nab\r\n" + draw(st.sampled_from(TRAILERS))
        else:
            at = draw(st.integers(0, max(len(data) - 1, 0)))
            if kind == "delete":
                data = data[:at] + data[at + 1 :]
            else:
                noise = draw(st.sampled_from(NOISE))
                cut = at + 1 if kind == "replace" else at
                data = data[:at] + noise + data[cut:]
    return data


def _splits(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p % (len(data) + 1) for p in points})
    reads, last = [], 0
    for cut in [*cuts, len(data)]:
        if cut > last:
            reads.append(data[last:cut])
            last = cut
    return reads


_loop: asyncio.AbstractEventLoop | None = None


def _run_all(data: bytes, points: list[int]) -> Iterator[tuple[str, str, Observation]]:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    for split, reads in (("whole", [data]), ("split", _splits(data, points))):
        for parser in PARSERS:
            yield parser, split, _loop.run_until_complete(observe(parser, reads))


def _check_same(request: bytes, points: list[int]) -> None:
    data = BEFORE + request + AFTER
    first: dict[str, tuple[str, Observation]] = {}
    for parser, split, seen in _run_all(data, points):
        # Split reads may let an app read part of a body before a refusal; what must not
        # differ is one parser from another on the same reads.
        if split not in first:
            first[split] = (parser, seen)
            continue
        other, expected = first[split]
        assert seen == expected, (
            f"{parser} differs from {other} ({split}) on {request!r}:\n{seen}\n!=\n{expected}"
        )


points = st.lists(st.integers(0, 10_000), min_size=1, max_size=4)


@settings(FUZZ, max_examples=max(EXAMPLES // 4, 1))
@given(request=requests(), points=points)
def test_valid_requests_are_served_alike(request: bytes, points: list[int]) -> None:
    _check_same(request, points)


@settings(FUZZ, max_examples=max(EXAMPLES - EXAMPLES // 4, 1))
@given(request=mutated(), points=points)
def test_mutated_requests_are_refused_or_served_alike(request: bytes, points: list[int]) -> None:
    _check_same(request, points)
