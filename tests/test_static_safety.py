"""--static is safe by construction: a path-traversal table sent over raw sockets.

Every row is a request a client or an attacker can send byte for byte (clients normalise
``..`` away, so only a raw socket sends them).  A refused row must answer 404 (or 400 when the
HTTP parser already refuses the bytes), never include a byte of a file outside DIR, and never
reach the app behind the mount.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dualcorn.mountspec import StaticDir
from tests.static_tree import HELLO, SECRET, CountingApp, make_tree
from tests.support import ServerThread, raw_exchange, status_of

pytestmark = pytest.mark.timeout(60)

REFUSED = [
    "/static/../secret.txt",
    "/static/../../../../../../etc/passwd",
    "/static/sub/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%2Fsecret.txt",
    "/static/sub/..%2f..%2fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/%252e%252e/secret.txt",  # double-encoded: the literal name "%2e%2e"
    "/static/%252e%252e%252fsecret.txt",
    "/static/%c0%ae%c0%ae/secret.txt",  # overlong UTF-8 for "..": not UTF-8 at all
    "/static/..%5csecret.txt",
    "/static/..%5Csecret.txt",
    "/static/sub%5c..%5c..%5csecret.txt",
    "/static/sub/..\\..\\secret.txt",  # raw backslashes
    "/static/..\\secret.txt",
    "/static/sub\\../../secret.txt",  # mixed slashes
    "/static/hello.txt%00.png",  # NUL
    "/static/%00",
    "/static/./hello.txt",  # a dot segment is refused, not resolved
    "/static//etc/passwd",
    "/static/sub//page.txt",
    "/static/.env",  # dotfiles
    "/static/%2eenv",
    "/static/.hidden/x.txt",
    "/static/%2ehidden/x.txt",
    "/static/link_out",  # symlinks leaving DIR
    "/static/link_out_relative",
    "/static/dir_out/file.txt",
    "/static/fifo",  # not a regular file (and opening it must not hang)
    "/static/hello.txt/",  # a file is not a directory
    "/static/hello.txt/..",
    "/static/sub",  # a directory without --static-index
    "/static/sub/",
    "/static/missing.txt",
]

SERVED = [
    ("/static/hello.txt", HELLO),
    ("/static/link_in", HELLO),  # a symlink that stays inside DIR
    ("/static/%68ello.txt", HELLO),  # percent-encoded letters are fine
    ("/static/caf%C3%A9.txt", b"accent\n"),
    ("/static/100%25.txt", b"percent\n"),
    ("/static/sub/page.txt", b"page\n"),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("static"))


@pytest.fixture(scope="module")
def server(tree: Path) -> Iterator[tuple[ServerThread, CountingApp]]:
    app = CountingApp()
    with ServerThread(app, static=(StaticDir("/static", str(tree)),), access_log=False) as srv:
        yield srv, app


def _get(port: int, target: str) -> bytes:
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    return raw_exchange(port, request.encode("latin-1"))


@pytest.mark.parametrize("target", REFUSED)
def test_refused(server: tuple[ServerThread, CountingApp], target: str) -> None:
    srv, app = server
    app.calls.clear()
    response = _get(srv.port, target)
    assert status_of(response) in (400, 404), response[:200]
    assert SECRET not in response
    assert app.calls == []  # never through the user's app


@pytest.mark.parametrize(("target", "body"), SERVED)
def test_served(server: tuple[ServerThread, CountingApp], target: str, body: bytes) -> None:
    srv, app = server
    response = _get(srv.port, target)
    assert status_of(response) == 200, response[:200]
    assert response.endswith(b"\r\n\r\n" + body)
    assert app.calls == []


def test_absolute_form_target_is_checked_too(server: tuple[ServerThread, CountingApp]) -> None:
    srv, _ = server
    response = _get(srv.port, "http://x/static/../secret.txt")
    assert status_of(response) in (400, 404)
    assert SECRET not in response


def test_encoded_slash_does_not_enter_the_mount(server: tuple[ServerThread, CountingApp]) -> None:
    srv, app = server
    app.calls.clear()
    response = _get(srv.port, "/static%2fhello.txt")
    assert status_of(response) == 200
    assert response.endswith(b"app:GET:/static/hello.txt")  # the app's answer, not the file
    assert app.calls == ["/static/hello.txt"]


def test_prefix_matches_whole_segments(server: tuple[ServerThread, CountingApp]) -> None:
    srv, _ = server
    assert _get(srv.port, "/statichello.txt").endswith(b"app:GET:/statichello.txt")


def test_options_allow_dotfiles_and_symlinks(tree: Path) -> None:
    options = {"static_dotfiles": True, "static_follow_symlinks": True, "access_log": False}
    with ServerThread(CountingApp(), static=("/static=" + str(tree),), **options) as srv:
        for target in ("/static/.env", "/static/link_out", "/static/dir_out/file.txt"):
            response = _get(srv.port, target)
            assert status_of(response) == 200, target
            assert response.endswith(SECRET)
        # Still refused: traversal is not a symlink, and dot segments are not dotfiles.
        for target in ("/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/."):
            assert status_of(_get(srv.port, target)) == 404, target
