"""What ``--mount`` and ``--static`` say, parsed and checked as plain data (no imports, no I/O).

Forms::

    --mount PATH=APP                   /legacy=old_flask:app  (interface detected)
    --mount PATH=APP@INTERFACE         /legacy=old_flask:app@wsgi
    --mount PATH=APP@INTERFACE:THREADS /legacy=old_flask:app@wsgi:8  (a WSGI pool of 8)
    --static PATH=DIR                  /static=./static

A mount path is matched segment by segment against the *decoded* segments of the request
path, so it is written decoded (``/caf\u00e9``, not ``/caf%C3%A9``); it has no empty, ``.``
or ``..`` segment, no ``%``, ``?``, ``#`` or backslash, and no trailing slash.  The main APP is
always at ``/``; a static directory may be at ``/`` too (a single-page app, with
``--static-fallthrough``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dualcorn.errors import ConfigError

__all__ = ["Mount", "StaticDir", "normalize_mount_path", "parse_mounts", "parse_statics"]

_INTERFACES = ("auto", "asgi3", "asgi2", "wsgi")
_FORBIDDEN = set("%?#\\\0")


@dataclass(frozen=True)
class Mount:
    """One application served below ``path``; ``threads`` sizes a WSGI mount's own pool."""

    path: str
    app: Any  # an import string, or the application object itself (Python API)
    interface: str = "auto"
    threads: int | None = None  # None: --threads

    @classmethod
    def parse(cls, text: str) -> Mount:
        path, sep, rest = text.partition("=")
        if not sep or not rest:
            raise ConfigError(f"mount: expected PATH=APP[@INTERFACE[:THREADS]], got {text!r}")
        app, at, how = rest.partition("@")
        interface, _, threads_text = how.partition(":") if at else ("auto", "", "")
        threads = None
        if threads_text:
            try:
                threads = int(threads_text)
            except ValueError:
                raise ConfigError(f"mount {text!r}: threads must be a whole number") from None
        return cls(path=path, app=app.strip(), interface=interface or "auto", threads=threads)

    def checked(self) -> Mount:
        path = normalize_mount_path(self.path, "mount")
        if path == "/":
            raise ConfigError("mount: '/' is the main APP's place; mount other apps below it")
        if self.interface not in _INTERFACES:
            raise ConfigError(
                f"mount {path}: interface must be one of {', '.join(_INTERFACES)}; "
                f"got {self.interface!r}"
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"mount {path}: threads must be at least 1; got {self.threads}")
        if isinstance(self.app, str) and not self.app:
            raise ConfigError(f"mount {path}: the app import string is empty")
        return Mount(path, self.app, self.interface, self.threads)


@dataclass(frozen=True)
class StaticDir:
    """Files of ``directory`` served below ``path`` by the server itself."""

    path: str
    directory: str

    @classmethod
    def parse(cls, text: str) -> StaticDir:
        path, sep, directory = text.partition("=")
        if not sep or not directory:
            raise ConfigError(f"static: expected PATH=DIR, got {text!r}")
        return cls(path=path, directory=directory)

    def checked(self) -> StaticDir:
        path = normalize_mount_path(self.path, "static")
        directory = os.path.abspath(self.directory)
        if not os.path.isdir(directory):
            raise ConfigError(f"static {path}: {self.directory!r} is not a directory")
        return StaticDir(path, directory)


def normalize_mount_path(path: str, option: str) -> str:
    """``/api/`` -> ``/api``; refuse what could never equal a decoded request segment."""
    path = path.strip()
    if not path.startswith("/"):
        raise ConfigError(f"{option}: the path must start with '/'; got {path!r}")
    if path != "/":
        path = path.rstrip("/")
    if any(c in _FORBIDDEN for c in path):
        raise ConfigError(f"{option}: {path!r} must be written decoded, without % ? # or \\")
    for segment in path.split("/")[1:]:
        if path != "/" and segment in ("", ".", ".."):
            raise ConfigError(f"{option}: {path!r} has an empty, '.' or '..' segment")
    return path


def _entry(kind: Any, item: Any, option: str) -> Any:
    """A string ("PATH=APP"), a mapping of the fields (a config file's table) or the value."""
    if isinstance(item, str):
        return kind.parse(item)
    if isinstance(item, dict):
        try:
            return kind(**item)
        except TypeError as exc:
            raise ConfigError(f"{option}: {exc}") from None
    if not isinstance(item, kind):
        raise ConfigError(f"{option}: expected a 'PATH=...' string or a table; got {item!r}")
    return item


def parse_mounts(items: Any) -> tuple[Mount, ...]:
    mounts = []
    for item in items:
        mount = _entry(Mount, item, "mount")
        mounts.append(mount.checked())
    paths = [m.path for m in mounts]
    for path in paths:
        if paths.count(path) > 1:
            raise ConfigError(f"mount: {path} is given twice")
    return tuple(mounts)


def parse_statics(items: Any) -> tuple[StaticDir, ...]:
    statics = []
    for item in items:
        static = _entry(StaticDir, item, "static")
        statics.append(static.checked())
    paths = [s.path for s in statics]
    for path in paths:
        if paths.count(path) > 1:
            raise ConfigError(f"static: {path} is given twice")
    return tuple(statics)
