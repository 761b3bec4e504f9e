"""Static files, the HTTP half: validators, conditional requests, ranges, precompressed siblings.

The router hands a :class:`StaticFiles` the raw path segments below its mount.  One executor hop
finds and opens the file (:mod:`dualcorn.static_fs`); the body then leaves through the ASGI
``http.response.zerocopysend`` extension, which the cycle turns into ``loop.sendfile`` on plain
TCP and into blocks read off the loop otherwise.  The user's app is never called, except for a
missing file under ``--static-fallthrough`` (a single-page app's client-side routes).

RFC 9110 rules applied, in its order (13.2.2): ``If-Match`` (strong comparison), else
``If-Unmodified-Since``, give 412 when they fail; ``If-None-Match`` (weak comparison, 13.1.2), else
``If-Modified-Since`` (GET and HEAD only) give 304 with the validators and ``Vary``
(15.4.5); then ``Range`` on GET (14.2), unless ``If-Range`` (13.1.5) no longer matches: one
``bytes`` range gives 206 with ``Content-Range`` (14.4), a range past the end 416 with
``bytes */size``; a multi-range or malformed header is ignored and the whole file sent, which
14.2 allows.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import os
from typing import Any

from dualcorn.config import Config
from dualcorn.static_fs import Found, content_type, lookup, url_segments

__all__ = ["StaticFiles", "accepted_codings", "parse_range"]

ZEROCOPY = "http.response.zerocopysend"
_BLOCK = 256 * 1024
_ALLOW = b"GET, HEAD"
_UNSATISFIABLE = (-1, -1)


class StaticFiles:
    """Serves one directory; ``await files(scope, receive, send, rest)`` -> answered or not."""

    def __init__(self, directory: str, config: Config) -> None:
        self.root = os.path.realpath(directory)
        self.index = config.static_index
        self.dotfiles = config.static_dotfiles
        self.follow_symlinks = config.static_follow_symlinks
        self.fallthrough = config.static_fallthrough
        self.cache_control = (
            None
            if config.static_max_age is None
            else f"public, max-age={config.static_max_age}".encode("ascii")
        )

    async def __call__(self, scope: Any, receive: Any, send: Any, rest: list[bytes]) -> bool:
        """Answer the request, or return False to let the app below the mount answer it."""
        if scope["type"] != "http":
            if self.fallthrough:
                return False
            await receive()  # websocket.connect
            await send({"type": "websocket.close"})  # ASGI: close before accept is a 403
            return True
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            if self.fallthrough:
                return False
            # RFC 9110 15.5.6: a 405 lists the methods the resource supports in Allow.
            await _simple(send, 405, b"Method Not Allowed\n", [(b"allow", _ALLOW)])
            return True
        names = url_segments(rest, dotfiles=self.dotfiles)
        headers = _request_headers(scope)
        found = None
        if names is not None:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(
                None,
                functools.partial(
                    lookup, self.root, names, accepted_codings(headers.get(b"accept-encoding")),
                    index=self.index, follow_symlinks=self.follow_symlinks,
                    dotfiles=self.dotfiles,
                ),
            )  # fmt: skip
        if found is None:
            if self.fallthrough:
                return False
            await _simple(send, 404, b"Not Found\n")
            return True
        if found == "redirect":
            # A directory asked for without its slash: relative links in its index.html
            # resolve against the URL, so send the client to "name/" (as nginx does).
            location = scope["raw_path"].rsplit(b"/", 1)[-1] + b"/"
            if scope.get("query_string"):
                location += b"?" + scope["query_string"]
            await _simple(send, 301, b"", [(b"location", location)])
            return True
        assert isinstance(found, Found)
        try:
            await self._respond(scope, send, headers, found)
        finally:
            found.close()
        return True

    async def _respond(
        self, scope: Any, send: Any, request: dict[bytes, bytes], found: Found
    ) -> None:
        etag = b'"%x-%x%s"' % (
            found.mtime_ns, found.size, b"-" + found.encoding.encode() if found.encoding else b""
        )  # fmt: skip
        modified = email.utils.formatdate(found.mtime, usegmt=True).encode("ascii")
        headers = [(b"etag", etag), (b"last-modified", modified)]
        if self.cache_control is not None:
            headers.append((b"cache-control", self.cache_control))
        if found.varies:
            headers.append((b"vary", b"Accept-Encoding"))
        if _precondition_failed(request, etag, found.mtime):
            await _simple(send, 412, b"Precondition Failed\n", headers)
            return
        if _not_modified(request, etag, found.mtime):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        validators = list(headers)
        headers.append((b"content-type", content_type(found.name).encode("latin-1")))
        if found.encoding:
            headers.append((b"content-encoding", found.encoding.encode("ascii")))
        headers.append((b"accept-ranges", b"bytes"))
        status, offset, count = 200, 0, found.size
        wanted = request.get(b"range")
        if wanted is not None and scope["method"] == "GET" and _if_range(request, etag, modified):
            span = parse_range(wanted, found.size)
            if span == _UNSATISFIABLE:
                # RFC 9110 15.5.17: the 416 names the current length; its body is ours.
                validators.append((b"content-range", b"bytes */%d" % found.size))
                await _simple(send, 416, b"Range Not Satisfiable\n", validators)
                return
            if span is not None:
                first, last = span
                status, offset, count = 206, first, last - first + 1
                headers.append((b"content-range", b"bytes %d-%d/%d" % (first, last, found.size)))
        headers.append((b"content-length", b"%d" % count))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD" or count == 0:
            await send({"type": "http.response.body", "body": b""})
        elif found.data is not None:
            await send({"type": "http.response.body", "body": found.data[offset : offset + count]})
        elif ZEROCOPY in (scope.get("extensions") or {}):
            # A file object for the extension; closing it leaves the descriptor to found.close().
            with open(found.fd, "rb", closefd=False) as file:  # noqa: ASYNC230 (no I/O)
                await send({"type": ZEROCOPY, "file": file, "offset": offset, "count": count})
        else:
            await _send_blocks(send, found, offset, count)


async def _send_blocks(send: Any, found: Found, offset: int, count: int) -> None:
    """Without the zerocopy extension: blocks read off the loop, sent with backpressure."""
    loop = asyncio.get_running_loop()
    left = count
    while left > 0:
        block = await loop.run_in_executor(None, os.pread, found.fd, min(left, _BLOCK), offset)
        if not block:
            raise OSError("the file shrank while it was being sent")
        left -= len(block)
        offset += len(block)
        await send({"type": "http.response.body", "body": block, "more_body": left > 0})


async def _simple(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = list(headers or ())
    if body:
        head.append((b"content-type", b"text/plain; charset=utf-8"))
    head.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _request_headers(scope: Any) -> dict[bytes, bytes]:
    wanted = (
        b"if-match", b"if-unmodified-since", b"if-none-match", b"if-modified-since", b"range",
        b"if-range", b"accept-encoding",
    )  # fmt: skip
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered in wanted:
            # RFC 9110 5.3: a list field's lines combine with commas.
            found[lowered] = found[lowered] + b", " + value if lowered in found else value
    return found


def _opaque(tag: bytes) -> bytes:
    tag = tag.strip()
    return tag[2:] if tag.startswith(b"W/") else tag


def _precondition_failed(request: dict[bytes, bytes], etag: bytes, mtime: float) -> bool:
    """RFC 9110 13.2.2 steps 1-2: If-Match (strong comparison), else If-Unmodified-Since."""
    tags = request.get(b"if-match")
    if tags is not None:
        listed = [t.strip() for t in tags.split(b",")]
        return b"*" not in listed and etag not in listed
    since = request.get(b"if-unmodified-since")
    if since is not None:
        stamp = _http_date(since)
        return stamp is not None and int(mtime) > stamp
    return False


def _not_modified(request: dict[bytes, bytes], etag: bytes, mtime: float) -> bool:
    tags = request.get(b"if-none-match")
    if tags is not None:
        # RFC 9110 13.1.2: If-None-Match uses the weak comparison; "*" matches any.
        listed = [t.strip() for t in tags.split(b",")]
        return b"*" in listed or any(_opaque(t) == etag for t in listed)
    since = request.get(b"if-modified-since")
    if since is not None:
        stamp = _http_date(since)
        # RFC 9110 13.1.3: HTTP dates have one-second resolution.
        return stamp is not None and int(mtime) <= stamp
    return False


def _if_range(request: dict[bytes, bytes], etag: bytes, modified: bytes) -> bool:
    """RFC 9110 13.1.5: a Range applies only if the validator still matches (strongly)."""
    condition = request.get(b"if-range")
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith((b'"', b"W/")):
        return condition == etag  # strong comparison: a weak tag never matches
    return condition == modified


def _http_date(value: bytes) -> int | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return None
    return int(parsed.timestamp())


def parse_range(value: bytes, size: int) -> tuple[int, int] | None:
    """The one ``bytes=`` range asked for, as (first, last); None to ignore the header;
    ``(-1, -1)`` when it cannot be satisfied (RFC 9110 14.1.2)."""
    unit, _, spec = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec:
        return None  # another unit, or several ranges: the whole file is a valid answer
    first_text, dash, last_text = spec.strip().partition(b"-")
    if not dash:
        return None
    first_text, last_text = first_text.strip(), last_text.strip()
    if not (first_text.isdigit() or first_text == b"") or not (
        last_text.isdigit() or last_text == b""
    ):
        return None
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)  # "-500": the last 500 bytes
        if suffix == 0 or size == 0:
            return _UNSATISFIABLE
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else None
    if last is not None and last < first:
        return None  # invalid: ignored, like a header the server does not understand
    if first >= size:
        return _UNSATISFIABLE
    if last is None:
        return first, size - 1
    return first, min(last, size - 1)


def accepted_codings(value: bytes | None) -> frozenset[str]:
    """The content codings an Accept-Encoding field allows (q > 0), RFC 9110 12.5.3."""
    if not value:
        return frozenset()
    allowed: set[str] = set()
    refused: set[str] = set()
    star = False
    for item in value.decode("latin-1").split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            key, _, number = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(number)
                except ValueError:
                    quality = 0.0
        if coding == "*":
            star = quality > 0
        elif quality > 0:
            allowed.add(coding)
        else:
            refused.add(coding)
    if star:
        allowed |= {"br", "gzip"} - refused
    if "x-gzip" in allowed:
        allowed.add("gzip")  # RFC 9110 8.4.1.3: x-gzip is an alias of gzip
    return frozenset(allowed)
