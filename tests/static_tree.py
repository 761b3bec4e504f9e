"""A directory tree for the static file tests: files, precompressed siblings, traps."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

__all__ = ["SECRET", "CountingApp", "make_tree"]

SECRET = b"TOP SECRET, never served"
HELLO = b"hello world\n"
JS = b"document.body.dataset.ready = 'yes';\n" * 40


class CountingApp:
    """An ASGI app that counts its calls, so a test can prove the app was never reached."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.calls.append(scope["path"])
        body = f"app:{scope['method']}:{scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def make_tree(base: Path) -> Path:
    """``base/site`` is the static DIR; ``base/secret.txt`` and ``base/outside/`` are not."""
    site = base / "site"
    (site / "sub").mkdir(parents=True)
    (site / ".hidden").mkdir()
    (base / "outside").mkdir()
    (base / "secret.txt").write_bytes(SECRET)
    (base / "outside" / "file.txt").write_bytes(SECRET)
    (site / "hello.txt").write_bytes(HELLO)
    (site / "empty.txt").write_bytes(b"")
    (site / "style.css").write_text("body { color: rgb(1, 2, 3); }\n")
    (site / "data.json").write_text('{"a": 1}\n')
    (site / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (site / "noext").write_bytes(b"raw")
    (site / "app.js").write_bytes(JS)
    (site / "app.js.gz").write_bytes(gzip.compress(JS))
    (site / "app.js.br").write_bytes(b"not really brotli, but only its headers are checked")
    (site / "only-gz.txt").write_bytes(HELLO)
    (site / "only-gz.txt.gz").write_bytes(gzip.compress(HELLO))
    (site / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (site / ".env").write_bytes(SECRET)
    (site / ".hidden" / "x.txt").write_bytes(SECRET)
    (site / "sub" / "index.html").write_bytes(b"<p>index</p>\n")
    (site / "sub" / "page.txt").write_bytes(b"page\n")
    (site / "caf\u00e9.txt").write_bytes(b"accent\n")
    (site / "100%.txt").write_bytes(b"percent\n")
    os.symlink("hello.txt", site / "link_in")
    os.symlink(base / "secret.txt", site / "link_out")
    os.symlink("../secret.txt", site / "link_out_relative")
    os.symlink(base / "outside", site / "dir_out")
    os.mkfifo(site / "fifo")
    return site
