"""The PEP 3333 environ the WSGI adapter builds from an ASGI scope."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from dualcorn.adapters.wsgi import FileWrapper, WSGIAdapter
from tests.asgi_driver import drive, make_scope

CGI_KEYS = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
    "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT",
)  # fmt: skip


class EnvironProbe:
    """A WSGI app that keeps the environ of each request it serves."""

    def __init__(self) -> None:
        self.environs: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.environs.append(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    @property
    def environ(self) -> dict[str, Any]:
        assert len(self.environs) == 1
        return self.environs[0]


@pytest.fixture
def probe() -> EnvironProbe:
    return EnvironProbe()


@pytest.fixture
async def adapter(probe: EnvironProbe) -> AsyncIterator[WSGIAdapter]:
    adapter = WSGIAdapter(probe, threads=2)
    yield adapter
    await adapter.shutdown()


async def test_cgi_keys_are_native_strings(adapter: WSGIAdapter, probe: EnvironProbe) -> None:
    scope = make_scope(
        method="POST",
        path="/items/7",
        query_string=b"a=1&b=%20",
        headers=[(b"host", b"example.com"), (b"content-length", b"2")],
        server=("10.0.0.1", 8080),
        client=("10.0.0.9", 41234),
    )
    await drive(adapter, scope, body=[b"hi"])
    environ = probe.environ
    for key in CGI_KEYS:
        assert type(environ[key]) is str, key
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/items/7"
    assert environ["QUERY_STRING"] == "a=1&b=%20"
    assert environ["SERVER_NAME"] == "10.0.0.1"
    assert environ["SERVER_PORT"] == "8080"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REMOTE_ADDR"] == "10.0.0.9"
    assert environ["REMOTE_PORT"] == "41234"
    assert environ["CONTENT_LENGTH"] == "2"
    assert environ["HTTP_HOST"] == "example.com"
    assert "HTTP_CONTENT_LENGTH" not in environ


async def test_wsgi_keys(probe: EnvironProbe) -> None:
    adapter = WSGIAdapter(probe, threads=1, multiprocess=True)
    try:
        await drive(adapter, scheme="https")
    finally:
        await adapter.shutdown()
    environ = probe.environ
    assert environ["wsgi.version"] == (1, 0)
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is True
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True
    assert environ["wsgi.file_wrapper"] is FileWrapper
    assert hasattr(environ["wsgi.input"], "read")


async def test_multiprocess_defaults_to_false(adapter: WSGIAdapter, probe: EnvironProbe) -> None:
    await drive(adapter)
    assert probe.environ["wsgi.multiprocess"] is False


async def test_content_type_has_no_http_prefix(adapter: WSGIAdapter, probe: EnvironProbe) -> None:
    await drive(adapter, headers=[(b"content-type", b"application/json")])
    assert probe.environ["CONTENT_TYPE"] == "application/json"
    assert "HTTP_CONTENT_TYPE" not in probe.environ


async def test_repeated_headers_are_joined(adapter: WSGIAdapter, probe: EnvironProbe) -> None:
    headers = [
        (b"accept", b"text/html"),
        (b"accept", b"application/json"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"x-forwarded-for", b"2.2.2.2"),
    ]
    await drive(adapter, headers=headers)
    assert probe.environ["HTTP_ACCEPT"] == "text/html, application/json"
    assert probe.environ["HTTP_COOKIE"] == "a=1; b=2"
    assert probe.environ["HTTP_X_FORWARDED_FOR"] == "1.1.1.1, 2.2.2.2"


async def test_underscored_header_cannot_spoof_dashed_one(
    adapter: WSGIAdapter, probe: EnvironProbe
) -> None:
    headers = [(b"x_forwarded_for", b"6.6.6.6"), (b"x-real-ip", b"1.2.3.4"), (b"x_b", b"1")]
    await drive(adapter, headers=headers)
    assert "HTTP_X_FORWARDED_FOR" not in probe.environ
    assert "HTTP_X_B" not in probe.environ
    assert probe.environ["HTTP_X_REAL_IP"] == "1.2.3.4"


async def test_header_values_are_latin1(adapter: WSGIAdapter, probe: EnvironProbe) -> None:
    await drive(adapter, headers=[(b"x-name", "café".encode())])
    # PEP 3333: the app gets the original bytes back with .encode("latin-1").
    assert probe.environ["HTTP_X_NAME"].encode("latin-1").decode("utf-8") == "café"


@pytest.mark.parametrize(
    ("path", "raw_path", "expected_bytes"),
    [
        ("/café", b"/caf%C3%A9", "/café".encode()),
        ("/café", "/café".encode(), "/café".encode()),  # raw UTF-8 on the wire
        ("/a b/ü", b"/a%20b/%C3%BC", "/a b/ü".encode()),
        ("/\ufffd", b"/%FF", b"/\xff"),  # not UTF-8: only the raw path has the byte
        ("/a/b", b"/a%2Fb", b"/a/b"),
    ],
)
async def test_path_info_is_latin1_of_the_request_bytes(
    adapter: WSGIAdapter, probe: EnvironProbe, path: str, raw_path: bytes, expected_bytes: bytes
) -> None:
    await drive(adapter, make_scope(path=path, raw_path=raw_path))
    path_info = probe.environ["PATH_INFO"]
    assert type(path_info) is str
    assert path_info.encode("latin-1") == expected_bytes


async def test_path_info_without_raw_path(adapter: WSGIAdapter, probe: EnvironProbe) -> None:
    scope = make_scope(path="/café")
    del scope["raw_path"]
    await drive(adapter, scope)
    assert probe.environ["PATH_INFO"].encode("latin-1") == "/café".encode()


@pytest.mark.parametrize(
    ("root_path", "path", "raw_path", "script_name", "path_info"),
    [
        # ASGI: path includes root_path; the raw path may (direct) or may not (a proxy
        # stripped the prefix) include it.
        ("/api", "/api/users", b"/api/users", "/api", "/users"),
        ("/api", "/api/users", b"/users", "/api", "/users"),
        ("/api", "/api", b"/api", "/api", ""),
        ("/api", "/api/api/x", b"/api/x", "/api", "/api/x"),
        ("/api", "/apiary", b"/apiary", "/api", "/apiary"),
        ("/ü", "/ü/x", b"/%C3%BC/x", "/ü".encode().decode("latin-1"), "/x"),
    ],
)
async def test_script_name_is_root_path(
    adapter: WSGIAdapter,
    probe: EnvironProbe,
    root_path: str,
    path: str,
    raw_path: bytes,
    script_name: str,
    path_info: str,
) -> None:
    await drive(adapter, make_scope(path=path, raw_path=raw_path, root_path=root_path))
    assert probe.environ["SCRIPT_NAME"] == script_name
    assert probe.environ["PATH_INFO"] == path_info


async def test_query_string_is_latin1(adapter: WSGIAdapter, probe: EnvironProbe) -> None:
    await drive(adapter, query_string="q=é".encode())
    assert probe.environ["QUERY_STRING"].encode("latin-1") == "q=é".encode()


@pytest.mark.parametrize(
    ("host", "scheme", "name", "port"),
    [
        (b"example.com:9000", "http", "example.com", "9000"),
        (b"example.com", "http", "example.com", "80"),
        (b"example.com", "https", "example.com", "443"),
        (b"[::1]:8443", "https", "::1", "8443"),
    ],
)
async def test_unix_socket_server_name_comes_from_host(
    adapter: WSGIAdapter, probe: EnvironProbe, host: bytes, scheme: str, name: str, port: str
) -> None:
    scope = make_scope(server=("/tmp/app.sock", None), client=None, scheme=scheme)
    scope["headers"] = [(b"host", host)]
    await drive(adapter, scope)
    assert probe.environ["SERVER_NAME"] == name
    assert probe.environ["SERVER_PORT"] == port
    assert "REMOTE_ADDR" not in probe.environ


async def test_http_10(adapter: WSGIAdapter, probe: EnvironProbe) -> None:
    await drive(adapter, http_version="1.0")
    assert probe.environ["SERVER_PROTOCOL"] == "HTTP/1.0"


async def test_each_request_gets_its_own_environ(adapter: WSGIAdapter, probe: EnvironProbe) -> None:
    await drive(adapter, headers=[(b"x-one", b"1")])
    probe.environs[0]["wsgi.version"] = "tampered"
    probe.environs[0]["SERVER_PROTOCOL"] = "tampered"
    await drive(adapter, http_version="1.0")
    await drive(adapter)
    first, second, third = probe.environs
    assert first is not second
    assert "HTTP_X_ONE" not in second
    assert second["wsgi.version"] == (1, 0)
    assert second["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert third["SERVER_PROTOCOL"] == "HTTP/1.1"


async def test_wsgi_errors_writes_to_the_error_logger(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        errors = environ["wsgi.errors"]
        errors.write("first line\nsecond ")
        errors.write("line\n")
        errors.writelines(["partial"])
        errors.flush()
        start_response("200 OK", [])
        return []

    adapter = WSGIAdapter(app, threads=1)
    with caplog.at_level(logging.DEBUG, logger="dualcorn.error"):
        await drive(adapter)
    await adapter.shutdown()
    messages = [r.getMessage() for r in caplog.records if r.name == "dualcorn.error"]
    assert messages == ["first line", "second line", "partial"]
    captured = capsys.readouterr()
    assert "first line" not in captured.out
    assert "first line" not in captured.err
