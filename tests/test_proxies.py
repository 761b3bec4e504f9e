"""Trusted proxy headers: the pure parsers and resolver, then what a real app reads.

The real-server cases that go through httpx run over HTTP/1.1 on each parser and over HTTP/2
(``@over_both``, h2c): a proxy that speaks h2c to dualcorn (HAProxy's ``proto h2``,
tests/test_proxy_e2e.py) sends the same fields, and the same trust rules apply to them.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualcorn import Config
from dualcorn.errors import ConfigError
from dualcorn.forwarded import MAX_HOPS, Node, parse_forwarded, parse_host, parse_node
from dualcorn.proxies import Forwarding, ProxyHeaders, TrustedProxies, resolve
from tests.conftest import over_both
from tests.support import http_client

LOOPBACK = TrustedProxies("127.0.0.1,::1")


def policy(spec: str = "127.0.0.1,::1", prefix: bool = False) -> ProxyHeaders:
    return ProxyHeaders(TrustedProxies(spec), prefix=prefix)


def headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode("latin-1")) for name, value in pairs]


# --- The trust set -----------------------------------------------------------------------


def test_trust_addresses_networks_star_and_unix() -> None:
    trusted = TrustedProxies("10.0.0.0/8, 192.168.1.7 ,::1,fd00::/8,unix")
    assert trusted.trusts("10.1.2.3")
    assert trusted.trusts("192.168.1.7")
    assert not trusted.trusts("192.168.1.8")
    assert trusted.trusts("::1")
    assert trusted.trusts("fd12::5")
    assert trusted.trusts("::ffff:10.9.9.9")  # an IPv4 peer seen through a dual-stack socket
    assert trusted.trusts(None)  # a Unix socket peer
    assert not trusted.trusts("garbage")
    assert not LOOPBACK.trusts(None)
    assert LOOPBACK.trusts("::ffff:127.0.0.1")
    assert LOOPBACK.trusts("0:0::1")
    assert not LOOPBACK.trusts("127.0.0.2")
    assert TrustedProxies("*").trusts("203.0.113.9")
    assert TrustedProxies("*").trusts(None)


def test_socket_paths_mean_unix_socket_peers() -> None:
    # uvicorn documents "literals (e.g. UNIX Socket path)" in --forwarded-allow-ips.
    assert TrustedProxies("/run/app.sock").trusts(None)
    assert TrustedProxies("unix:/run/app.sock").trusts(None)
    assert not TrustedProxies("/run/app.sock").trusts("127.0.0.1")


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.com", "1.2.3.4:80", "300.1.1.1"])
def test_config_refuses_bad_allow_ips(bad: str) -> None:
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        Config(app="x:y", forwarded_allow_ips=bad)


def test_config_reads_forwarded_allow_ips_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Config(app="x:y").forwarded_allow_ips == ("127.0.0.1", "::1")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1, 10.0.0.2")
    assert Config(app="x:y").forwarded_allow_ips == ("10.0.0.1", "10.0.0.2")
    assert Config(app="x:y", forwarded_allow_ips="*").forwarded_allow_ips == ("*",)


def test_cli_options_and_dualcorn_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from dualcorn.cli import config_from_args

    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1")
    monkeypatch.setenv("DUALCORN_FORWARDED_ALLOW_IPS", "10.0.0.2")
    config = config_from_args(["m:app", "--no-proxy-headers", "--proxy-protocol"])
    assert config.forwarded_allow_ips == ("10.0.0.2",)
    assert not config.proxy_headers and config.proxy_protocol and not config.forwarded_prefix
    config = config_from_args(["m:app", "--forwarded-allow-ips", "unix,10.0.0.0/8"])
    assert config.forwarded_allow_ips == ("unix", "10.0.0.0/8")
    assert config.proxy_headers


# --- Parsers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "node"),
    [
        ("203.0.113.5", Node("ip", "203.0.113.5", 0)),
        ("203.0.113.5:4711", Node("ip", "203.0.113.5", 4711)),
        ("2001:db8::1", Node("ip", "2001:db8::1", 0)),
        ("[2001:DB8::1]:4711", Node("ip", "2001:db8::1", 4711)),
        ("unknown", Node("unknown", "unknown", 0)),
        ("_hidden", Node("obfuscated", "_hidden", 0)),
        ("192.0.2.43:_port", Node("ip", "192.0.2.43", 0)),
        ("999.1.1.1", None),
        ("1.2.3.4:99999", None),
        ("[1.2.3.4]", None),
        ("", None),
        ("not an address", None),
    ],
)
def test_parse_node(raw: str, node: Node | None) -> None:
    assert parse_node(raw) == node


def test_parse_forwarded_rfc7239_examples() -> None:
    # RFC 7239 4 and 7.1 examples.
    assert parse_forwarded(b'for="_gazonk"') == [{"for": "_gazonk"}]
    assert parse_forwarded(b'For="[2001:db8:cafe::17]:4711"') == [
        {"for": "[2001:db8:cafe::17]:4711"}
    ]
    assert parse_forwarded(b"for=192.0.2.60;proto=http;by=203.0.113.43") == [
        {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}
    ]
    assert parse_forwarded(b"for=192.0.2.43, for=198.51.100.17") == [
        {"for": "192.0.2.43"},
        {"for": "198.51.100.17"},
    ]
    assert parse_forwarded(b'for="a,b;c", for=unknown') == [{"for": "a,b;c"}, {"for": "unknown"}]
    for bad in (b"for=1.2.3.4;for=5.6.7.8", b'for="unterminated', b"for", b"=x", b"for=a b"):
        assert parse_forwarded(bad) is None
    assert parse_forwarded(b",".join([b"for=1.1.1.1"] * (MAX_HOPS + 1))) is None


def test_parse_host() -> None:
    assert parse_host("example.com") == ("example.com", None)
    assert parse_host("example.com:8443") == ("example.com", 8443)
    assert parse_host("[::1]:8080") == ("[::1]", 8080)
    for bad in ("exa mple.com", "example.com:0", "a:b:c", "[zz]:1", "x/y", "", "h:99999",
                "%2f%2fevil.com", "a'b", "a;b", "evil.com\\x", "a@b"):  # fmt: skip
        assert parse_host(bad) is None


# --- The resolver ------------------------------------------------------------------------


def test_no_forwarding_header_is_no_change() -> None:
    assert resolve(policy(), headers(("host", "a"), ("accept", "*/*")), "http") is None


def test_x_forwarded_for_rightmost_untrusted_wins() -> None:
    p = policy("127.0.0.1,10.0.0.0/8")
    # The client prepended 6.6.6.6; 203.0.113.9 is what the first trusted proxy saw.
    found = resolve(p, headers(("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.0.0.5")), "http")
    assert found == Forwarding(client=("203.0.113.9", 0))
    # Every hop trusted: the leftmost is where the request entered.
    found = resolve(p, headers(("X-Forwarded-For", "10.0.0.1, 10.0.0.5")), "http")
    assert found is not None and found.client == ("10.0.0.1", 0)
    # "*" trusts every hop, so the leftmost wins (uvicorn does the same).
    found = resolve(policy("*"), headers(("X-Forwarded-For", "1.1.1.1, 2.2.2.2")), "http")
    assert found is not None and found.client == ("1.1.1.1", 0)
    # Repeated lines are one list (RFC 9110 5.3).
    h = headers(("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.9"))
    assert resolve(p, h, "http") == Forwarding(client=("203.0.113.9", 0))


def test_garbage_leaves_the_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dualcorn.error")
    for value in ("garbage", "1.2.3.4, nonsense"):
        found = resolve(policy(), headers(("X-Forwarded-For", value)), "http")
        assert found == Forwarding()
    assert "X-Forwarded-For" in caplog.text


def test_a_client_cannot_pose_as_its_proxy_with_many_hops() -> None:
    # A client behind nginx sends 1000 hops (or a malformed Forwarded element); the proxy
    # appends the real address.  Voiding the whole header would make the client look like
    # the proxy (127.0.0.1 here); the walk from the right must still find the client.
    spam = ",".join(["10.0.0.1"] * 1000)
    h = headers(("X-Forwarded-For", f"{spam}, 203.0.113.9"), ("X-Forwarded-Proto", "https"))
    assert resolve(policy(), h, "http") == Forwarding(client=("203.0.113.9", 0), scheme="https")
    for element in (",".join(["for=1.1.1.1"] * 1000), "for=1.2.3.4;for=5.6.7.8", 'for="x'):
        h = headers(("Forwarded", element), ("Forwarded", "for=203.0.113.9;proto=https"))
        found = resolve(policy(), h, "http")
        assert found == Forwarding(client=("203.0.113.9", 0), scheme="https"), element
    # More trusted hops than are read: the client is unknown, the socket peer stays.
    chain = ",".join(["127.0.0.1"] * (MAX_HOPS + 5))
    assert resolve(policy(), headers(("X-Forwarded-For", chain)), "http") == Forwarding()
    # A client's unbalanced quote cannot reach into the line its proxy added.
    h = headers(("Forwarded", 'for="a'), ("Forwarded", 'for="[2001:db8::9]";proto=https'))
    assert resolve(policy(), h, "http") == Forwarding(client=("2001:db8::9", 0), scheme="https")
    # A malformed element that the walk reaches still voids the header's facts.
    h = headers(("Forwarded", "for=203.0.113.9;proto=https, for=1.2.3.4;for=5.6.7.8"))
    assert resolve(policy(), h, "http") == Forwarding()


def test_mapped_peers_match_networks_in_either_form() -> None:
    trusted = TrustedProxies("::ffff:127.0.0.1/128, 10.0.0.0/8")
    assert trusted.trusts("::ffff:127.0.0.1") and trusted.trusts("::ffff:10.1.2.3")
    assert trusted.trusts("10.1.2.3") and not trusted.trusts("127.0.0.1")


def test_proto_host_port_and_scheme_mapping() -> None:
    h = headers(
        ("Host", "internal:8000"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "example.com"),
    )
    assert resolve(policy(), h, "http") == Forwarding(
        client=("203.0.113.9", 0),
        scheme="https",
        host="example.com",
        server=("example.com", 443),
    )
    assert resolve(policy(), headers(("X-Forwarded-Proto", "wss")), "http") == Forwarding(
        scheme="https"
    )
    assert resolve(policy(), headers(("X-Forwarded-Proto", "https")), "ws") == Forwarding(
        scheme="wss"
    )
    assert resolve(policy(), headers(("X-Forwarded-Proto", "HTTP")), "ws") == Forwarding(
        scheme="ws"
    )
    assert resolve(policy(), headers(("X-Forwarded-Proto", "gopher")), "http") == Forwarding()
    # Only a port: the request's Host name keeps, the port changes.
    h = headers(("Host", "example.com:8000"), ("X-Forwarded-Port", "8443"))
    assert resolve(policy(), h, "http") == Forwarding(
        host="example.com:8443", server=("example.com", 8443)
    )
    h = headers(("X-Forwarded-Host", "[2001:db8::1]:9000"), ("X-Forwarded-Proto", "http"))
    assert resolve(policy(), h, "http") == Forwarding(
        scheme="http", host="[2001:db8::1]:9000", server=("2001:db8::1", 9000)
    )


def test_lists_align_with_the_client_hop_or_take_the_nearest() -> None:
    p = policy("127.0.0.1,10.0.0.0/8")
    h = headers(("X-Forwarded-For", "6.6.6.6, 203.0.113.9"), ("X-Forwarded-Proto", "https, http"))
    assert resolve(p, h, "http") == Forwarding(client=("203.0.113.9", 0), scheme="http")
    h = headers(("X-Forwarded-For", "203.0.113.9, 10.0.0.2"), ("X-Forwarded-Proto", "https, http"))
    assert resolve(p, h, "http") == Forwarding(client=("203.0.113.9", 0), scheme="https")
    h = headers(("X-Forwarded-For", "1.1.1.1, 2.2.2.2"), ("X-Forwarded-Proto", "https"))
    found = resolve(p, h, "http")
    assert found is not None and found.scheme == "https"


def test_conflicting_repeated_lines_are_ignored() -> None:
    h = headers(("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "http"))
    assert resolve(policy(), h, "http") == Forwarding()
    h = headers(("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "https"))
    assert resolve(policy(), h, "http") == Forwarding(scheme="https")


def test_forwarded_header() -> None:
    p = policy("127.0.0.1,198.51.100.0/24")
    value = 'for=6.6.6.6;proto=http, for="[2001:db8:cafe::17]:4711";proto=https;host=ex.org'
    value += ", for=198.51.100.17;proto=http"
    assert resolve(p, headers(("Forwarded", value)), "http") == Forwarding(
        client=("2001:db8:cafe::17", 4711),
        scheme="https",
        host="ex.org",
        server=("ex.org", 443),
    )
    # Obfuscated and unknown clients: the client stays the socket peer, proto still applies.
    for hidden in ("_gazonk", "unknown"):
        h = headers(("Forwarded", f'for="{hidden}";proto=https'))
        assert resolve(p, h, "http") == Forwarding(scheme="https")
    assert resolve(p, headers(("Forwarded", "for=1.2.3.4;for=5.6.7.8")), "http") == Forwarding()


def test_x_forwarded_wins_over_forwarded() -> None:
    # nginx sets X-Forwarded-For and passes the client's own Forwarded header through.
    h = headers(
        ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
        ("X-Forwarded-For", "203.0.113.9"),
    )
    assert resolve(policy(), h, "http") == Forwarding(client=("203.0.113.9", 0))


def test_prefix_only_when_enabled() -> None:
    h = headers(("X-Forwarded-Prefix", "/api/"))
    assert resolve(policy(), h, "http") is None
    assert resolve(policy(prefix=True), h, "http") == Forwarding(root_path="/api")
    bad_prefixes = ("api", "/a?b", "/a/../b", "/a b", "//evil.com", "/\\evil.com", "/<x>")
    for bad in (*bad_prefixes, "/%2e%2e/x", "/%2F%2Fevil.com", "/a%5cb", "/a%00", "/%zz"):
        found = resolve(policy(prefix=True), headers(("X-Forwarded-Prefix", bad)), "http")
        assert found == Forwarding()


# --- No input raises ---------------------------------------------------------------------

_NAMES = st.sampled_from(
    [b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
     b"x-forwarded-port", b"x-forwarded-prefix", b"host"]
)  # fmt: skip
_ALPHABET = b'0123456789abcdef:.[]_,;="\\ \tunknowfrpthsx/%\x00\xff'
_VALUES = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(list(_ALPHABET)), max_size=120).map(bytes),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6), st.sampled_from(["http", "ws"]))
def test_resolve_never_raises(pairs: list[tuple[bytes, bytes]], scheme: str) -> None:
    for spec in ("127.0.0.1", "*", "0.0.0.0/0,::/0"):
        found = resolve(policy(spec, prefix=True), pairs, scheme)
        if found is not None and found.client is not None:
            assert isinstance(found.client[0], str) and 0 <= found.client[1] <= 65535
        if found is not None and found.scheme is not None:
            assert found.scheme in (("http", "https") if scheme == "http" else ("ws", "wss"))


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_parsers_never_raise(value: bytes) -> None:
    parse_forwarded(value)
    parse_node(value)
    parse_host(value)


# --- What a real app reads ---------------------------------------------------------------


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        facts = {"scheme": scope["scheme"], "client": scope["client"]}
        await send({"type": "websocket.send", "text": json.dumps(facts)})
        await send({"type": "websocket.close"})
        return
    facts = {
        "client": scope["client"],
        "scheme": scope["scheme"],
        "server": scope["server"],
        "root_path": scope["root_path"],
        "path": scope["path"],
        "host": dict(scope["headers"]).get(b"host", b"").decode(),
    }
    body = json.dumps(facts).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def environ_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME",
            "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO")  # fmt: skip
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({key: environ.get(key) for key in keys}).encode()]


def fetch(protocol: str, url: str, **options: Any) -> httpx.Response:
    """One GET with httpx over HTTP/1.1, or over HTTP/2 with prior knowledge (h2c)."""
    transport = options.pop("transport", None)
    with http_client(protocol, transport=transport) as client:
        response = client.get(url, **options)
    assert response.http_version == ("HTTP/2" if protocol == "2" else "HTTP/1.1")
    return response


FORWARDED = {
    "X-Forwarded-For": "6.6.6.6, 203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "example.com",
    "X-Forwarded-Prefix": "/api",
}


@over_both
def test_asgi_scope_from_a_trusted_proxy(serve: Any, protocol: str) -> None:
    with serve(scope_app, forwarded_prefix=True) as server:
        facts = fetch(protocol, server.url + "/users", headers=FORWARDED).json()
    assert facts == {
        "client": ["203.0.113.9", 0],
        "scheme": "https",
        "server": ["example.com", 443],
        "root_path": "/api",
        "path": "/api/users",
        "host": "example.com",
    }


@over_both
def test_untrusted_peer_changes_nothing(serve: Any, protocol: str) -> None:
    with serve(scope_app, forwarded_allow_ips="192.0.2.1", forwarded_prefix=True) as server:
        facts = fetch(protocol, server.url + "/users", headers=FORWARDED).json()
    assert facts["client"][0] == "127.0.0.1" and facts["client"][1] > 0
    assert facts["scheme"] == "http"
    assert facts["server"] == ["127.0.0.1", server.port]
    assert facts["root_path"] == "" and facts["path"] == "/users"
    assert facts["host"] == f"127.0.0.1:{server.port}"


@over_both
def test_no_proxy_headers_changes_nothing(serve: Any, protocol: str) -> None:
    with serve(scope_app, proxy_headers=False) as server:
        facts = fetch(protocol, server.url, headers=FORWARDED).json()
    assert facts["client"][0] == "127.0.0.1" and facts["scheme"] == "http"


@over_both
@pytest.mark.parametrize("trusted", [True, False])
def test_wsgi_environ(serve: Any, protocol: str, trusted: bool) -> None:
    allow = "127.0.0.1" if trusted else "192.0.2.1"
    headers = {**FORWARDED, "X-Forwarded-Port": "8443"}
    with serve(environ_app, interface="wsgi", forwarded_allow_ips=allow) as server:
        environ = fetch(protocol, server.url + "/x", headers=headers).json()
    if trusted:
        assert environ == {
            "REMOTE_ADDR": "203.0.113.9",
            "REMOTE_PORT": "0",
            "wsgi.url_scheme": "https",
            "HTTP_HOST": "example.com:8443",
            "SERVER_NAME": "example.com",
            "SERVER_PORT": "8443",
            "SCRIPT_NAME": "",  # --forwarded-prefix is off
            "PATH_INFO": "/x",
        }
    else:
        assert environ["REMOTE_ADDR"] == "127.0.0.1"
        assert environ["wsgi.url_scheme"] == "http"
        assert environ["HTTP_HOST"] == f"127.0.0.1:{server.port}"
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", str(server.port))


def test_websocket_scope(serve: Any) -> None:
    from websockets.sync.client import connect

    with serve(scope_app) as server:
        address = server.url.replace("http://", "ws://")
        extra = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        with connect(address, additional_headers=extra, open_timeout=10) as ws:
            facts = json.loads(ws.recv(timeout=10))
    assert facts == {"scheme": "wss", "client": ["203.0.113.9", 0]}


@over_both
def test_access_log_shows_the_real_client(
    serve: Any, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("dualcorn.access")
    propagate, logger.propagate = logger.propagate, True
    caplog.set_level(logging.INFO, logger="dualcorn.access")
    try:
        with serve(scope_app) as server:
            fetch(protocol, server.url, headers={"X-Forwarded-For": "2001:db8::7"})
    finally:
        logger.propagate = propagate
    assert "[2001:db8::7]:0 - " in caplog.text


def test_malformed_headers_are_served_normally(serve: Any) -> None:
    with serve(scope_app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        request = (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: \xff\xfe, [::1\r\n"
            b'Forwarded: for="\r\nX-Forwarded-Port: 99999\r\nConnection: close\r\n\r\n'
        )
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    facts = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert facts["client"][0] == "127.0.0.1" and facts["host"] == "a"


@over_both
@pytest.mark.parametrize("allow", ["127.0.0.1", "unix"])
def test_unix_socket_peers_are_trusted_only_with_unix(
    serve: Any, protocol: str, tmp_path: Any, allow: str
) -> None:
    path = str(tmp_path / "s.sock")
    with serve(scope_app, uds=path, forwarded_allow_ips=allow):
        h2 = protocol == "2"
        transport = httpx.HTTPTransport(uds=path, http1=not h2, http2=h2)
        facts = fetch(protocol, "http://localhost/", headers=FORWARDED, transport=transport).json()
    if allow == "unix":
        assert facts["client"] == ["203.0.113.9", 0] and facts["scheme"] == "https"
    else:
        assert facts["client"] is None and facts["scheme"] == "http"


@over_both
def test_wsgi_script_name_from_forwarded_prefix(serve: Any, protocol: str) -> None:
    with serve(environ_app, interface="wsgi", forwarded_prefix=True) as server:
        environ = fetch(protocol, server.url + "/x/y", headers=FORWARDED).json()
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/api", "/x/y")


@over_both
def test_hostile_values_through_a_trusted_proxy(serve: Any, protocol: str) -> None:
    # What a client can smuggle through a proxy that appends to X-Forwarded-For and passes
    # -Host and -Prefix on: a long hop list, a slashy host, a backslash prefix.
    hostile = {
        "X-Forwarded-For": ",".join(["127.0.0.1"] * 100) + ", 203.0.113.9",
        "X-Forwarded-Host": "%2f%2fevil.com",
        "X-Forwarded-Prefix": "/\\evil.com",
    }
    with serve(environ_app, interface="wsgi", forwarded_prefix=True) as server:
        environ = fetch(protocol, server.url + "/x", headers=hostile).json()
    assert environ["REMOTE_ADDR"] == "203.0.113.9"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("", "/x")


def test_gunicorn_scheme_flags_when_x_forwarded_proto_is_absent() -> None:
    # gunicorn's default secure_scheme_headers: X-Forwarded-Ssl: on, X-Forwarded-Protocol: ssl.
    for pair in (("X-Forwarded-Ssl", "on"), ("X-Forwarded-Protocol", "ssl")):
        assert resolve(policy(), headers(pair), "http") == Forwarding(scheme="https")
        assert resolve(policy(), headers(pair), "ws") == Forwarding(scheme="wss")
    assert resolve(policy(), headers(("X-Forwarded-Ssl", "off")), "https") == Forwarding(
        scheme="http"
    )
    # X-Forwarded-Proto, when a proxy sets it, wins; junk flags change nothing.
    h = headers(("X-Forwarded-Proto", "http"), ("X-Forwarded-Ssl", "on"))
    assert resolve(policy(), h, "http") == Forwarding(scheme="http")
    for junk in ("yes", "1", ""):
        assert resolve(policy(), headers(("X-Forwarded-Ssl", junk)), "http") == Forwarding()


@over_both
def test_scheme_flags_from_a_real_proxy_and_not_from_strangers(serve: Any, protocol: str) -> None:
    flag = {"X-Forwarded-Ssl": "on"}
    with serve(environ_app, interface="wsgi") as trusted:
        assert fetch(protocol, trusted.url, headers=flag).json()["wsgi.url_scheme"] == "https"
    with serve(environ_app, interface="wsgi", forwarded_allow_ips="10.0.0.1") as untrusted:
        assert fetch(protocol, untrusted.url, headers=flag).json()["wsgi.url_scheme"] == "http"
