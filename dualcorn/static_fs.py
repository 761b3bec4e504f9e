"""Static files, the filesystem half: a request path to an open file inside DIR, or nothing.

Safe by construction rather than by filtering a joined string:

1. :func:`url_segments` turns the raw path below the mount into decoded segments and refuses
   (``None``) anything that is not a plain name: ``.`` and ``..`` (RFC 3986 5.2.4 dot segments,
   which a browser never sends), an encoded slash or backslash, a backslash, NUL or any other
   control character, bytes that are not UTF-8, an empty segment (``//``) other than a final
   one, and names starting with a dot unless ``--static-dotfiles``.  Decoding happens exactly
   once, so ``%252e%252e`` is the harmless literal name ``%2e%2e``.
2. :func:`open_file` opens the joined path with ``O_NONBLOCK`` (a FIFO would otherwise block
   the thread forever), takes ``fstat`` of *that* descriptor (no race between stat and open),
   serves only regular files, and checks where the descriptor really is (``/proc/self/fd`` on
   Linux, ``realpath`` elsewhere): outside DIR, through a symlink, is refused unless
   ``--static-follow-symlinks``.

These calls block (an NFS mount or a cold disk can take long), so :func:`lookup` runs whole in
one executor hop per request, off the event loop.
"""

from __future__ import annotations

import functools
import mimetypes
import os
import stat
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = ["Found", "content_type", "lookup", "open_file", "url_segments"]

_PROC_FD = "/proc/self/fd"
_HAS_PROC = os.path.isdir(_PROC_FD)
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
)
_CONTROL = {chr(c) for c in (*range(0x20), 0x7F)}
# Text types that get "; charset=utf-8" besides text/*.
_TEXT_LIKE = {
    "application/javascript", "application/json", "application/xml", "image/svg+xml",
    "application/manifest+json", "application/xhtml+xml", "application/ld+json",
}  # fmt: skip
_ENCODED_TYPES = {"gzip": "application/gzip", "br": "application/x-brotli"}
# Precompressed siblings, best first: Brotli is smaller than gzip for the same text.
VARIANTS = (("br", ".br"), ("gzip", ".gz"))
# Files up to this size are read into memory instead of sent with sendfile (the default
# asyncio write buffer high-water mark: such a body fits in one transport write anyway).
SMALL_FILE = 64 * 1024


def url_segments(raw: list[bytes], *, dotfiles: bool) -> list[str] | None:
    """Decoded, checked path segments, or None when the path is refused.

    A final empty segment (a trailing slash) is kept: it asks for a directory.
    """
    names = []
    last = len(raw) - 1
    for index, part in enumerate(raw):
        if not part:
            if index == last:
                names.append("")
                continue
            return None
        lowered = part.lower()
        if b"%2f" in lowered or b"%5c" in lowered:
            return None  # an encoded slash is a name with a slash in it: there are none
        try:
            name = unquote_to_bytes(part).decode("utf-8") if b"%" in part else part.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if name in (".", "..") or "/" in name or "\\" in name or any(c in _CONTROL for c in name):
            return None
        if name.startswith(".") and not dotfiles:
            return None
        names.append(name)
    return names


@dataclass
class Found:
    """An open regular file and what the response needs to know about it."""

    fd: int
    size: int
    mtime: float
    mtime_ns: int
    name: str  # the file name the URL asked for (its Content-Type), not the .br/.gz sibling
    encoding: str | None = None  # Content-Encoding of a precompressed sibling
    varies: bool = False  # a sibling exists, so the response depends on Accept-Encoding
    data: bytes | None = None  # the whole content of a small file, read in the same hop

    def close(self) -> None:
        os.close(self.fd)


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def open_file(path: str, root: str, *, follow_symlinks: bool, dotfiles: bool) -> Found | str | None:
    """Open ``path`` if it is a regular file inside ``root`` (a realpath); "dir" or None if not."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            os.close(fd)
            return "dir"
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return None
        if not follow_symlinks:
            real = os.readlink(f"{_PROC_FD}/{fd}") if _HAS_PROC else os.path.realpath(path)
            relative = real[len(root) :].split(os.sep)
            if not _inside(real, root) or (
                not dotfiles and any(p.startswith(".") for p in relative if p)
            ):
                os.close(fd)
                return None
    except OSError:
        os.close(fd)
        return None
    name = os.path.basename(path)
    return Found(fd, info.st_size, info.st_mtime, info.st_mtime_ns, name)


def lookup(
    root: str,
    names: list[str],
    accepted: frozenset[str],
    *,
    index: bool,
    follow_symlinks: bool,
    dotfiles: bool,
) -> Found | str | None:
    """The file for ``names`` below ``root``: a Found, "redirect" (a directory without its
    trailing slash, with index on) or None.  Runs in an executor thread."""
    want_dir = bool(names) and names[-1] == ""
    parts = [n for n in names if n]
    path = os.path.join(root, *parts) if parts else root
    opened = open_file(path, root, follow_symlinks=follow_symlinks, dotfiles=dotfiles)
    if opened == "dir":
        if not index:
            return None
        if not want_dir:
            return "redirect"
        path = os.path.join(path, "index.html")
        opened = open_file(path, root, follow_symlinks=follow_symlinks, dotfiles=dotfiles)
    elif want_dir:
        if isinstance(opened, Found):
            opened.close()
        return None  # "file.txt/" names no directory
    if not isinstance(opened, Found):
        return None
    chosen = opened
    for coding, suffix in VARIANTS:
        sibling = open_file(path + suffix, root, follow_symlinks=follow_symlinks, dotfiles=dotfiles)
        if not isinstance(sibling, Found):
            continue
        opened.varies = True
        if chosen is opened and coding in accepted:
            chosen = sibling
            chosen.encoding = coding
        else:
            sibling.close()
    if chosen is not opened:
        chosen.name = opened.name
        chosen.varies = True
        opened.close()
    if chosen.size <= SMALL_FILE:
        # One read in this hop beats a sendfile (or, on uvloop, a second executor hop) for
        # a small body, which then leaves in the same write as the head.
        data = os.pread(chosen.fd, chosen.size, 0)
        if len(data) == chosen.size:  # otherwise the file changed under us: send it as is
            chosen.data = data
    return chosen


@functools.lru_cache(maxsize=256)
def content_type(name: str) -> str:
    """From the standard ``mimetypes`` table; UTF-8 for text (RFC 9110 8.3.1)."""
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:
        # "x.tar.gz" is served as the gzip file it is, not as a tar with Content-Encoding.
        return _ENCODED_TYPES.get(encoding, "application/octet-stream")
    if kind is None:
        return "application/octet-stream"
    if kind.startswith("text/") or kind in _TEXT_LIKE:
        return f"{kind}; charset=utf-8"
    return kind
