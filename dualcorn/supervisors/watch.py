"""What ``--reload`` watches: directories, include and exclude globs, bursts of saves.

watchfiles (inotify, FSEvents, ReadDirectoryChangesW) runs in a thread and hands each batch of
changes to the reloader through a queue, waking it through a socket it waits on along with its
children.  watchfiles hands a batch over once a ``step`` has passed with no new change, that is
between one and two steps after a save; the step is kept short here, and the reloader does the
debouncing itself: it reloads once the files have been quiet for ``--reload-delay``, so an
editor's write-rename-chmod burst, or a ``git checkout``, is one reload and not ten.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import os
import queue
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dualcorn.config import Config
from dualcorn.errors import ConfigError

__all__ = ["ChangeFilter", "Watcher", "describe_changes", "forget_bytecode", "watched_dirs"]

# uvicorn watches "*.py" unless told otherwise; --reload-include adds to it.
DEFAULT_INCLUDES = ("*.py",)
# Directories no one wants a reload for: VCS metadata, virtualenvs, caches, build output.
DEFAULT_EXCLUDES = (
    "__pycache__", ".git", ".hg", ".svn", ".venv", "venv", "env", "node_modules", ".tox",
    ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", ".idea",
    "*.egg-info", "dist", "build",
    # Editor droppings: vim swap files and its "4913" write probe, emacs lock and backup
    # files, JetBrains safe-write temporaries.
    "*.sw?", "4913", "*~", ".#*", "#*#", "*.___jb_???___",
)  # fmt: skip
# watchfiles groups changes for at most this long even when saves never pause (its default).
_DEBOUNCE_MS = 1600
# Short, so a batch reaches the reloader 25-50 ms after a save; --reload-delay comes on top.
_STEP_MS = 25


def watched_dirs(config: Config) -> list[Path]:
    """The absolute directories to watch, none inside another; the current one by default."""
    dirs = [Path(d).resolve() for d in config.reload_dirs] or [Path.cwd(), *_app_dirs(config)]
    for path in dirs:
        if not path.is_dir():
            raise ConfigError(f"reload_dirs: {str(path)!r} is not a directory")
    unique = sorted(set(dirs), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(path.is_relative_to(outer) for outer in kept):
            kept.append(path)
    return kept


def _app_dirs(config: Config) -> list[Path]:
    """Where the main app's and each mounted app's code lives, found without importing it.

    A mount may come from a directory beside the project (on PYTHONPATH); installed packages
    and the standard library are not the user's code and are never watched.
    """
    import sys
    from importlib.machinery import PathFinder

    apps = [config.app, *(mount.app for mount in config.mounts)]
    search = [os.path.abspath(config.app_dir or "."), *sys.path]
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    found: list[Path] = []
    for app in apps:
        if not isinstance(app, str):
            continue
        top = app.partition(":")[0].split(".")[0]
        try:
            spec = PathFinder.find_spec(top, search)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin is None:
            continue
        locations = list(spec.submodule_search_locations or [])
        place = Path(locations[0] if locations else spec.origin).resolve()
        place = place if locations else place.parent
        if not any(place.is_relative_to(prefix) for prefix in installed):
            found.append(place)
    return found


class ChangeFilter:
    """watchfiles' ``watch_filter``: does a change to this path call for a reload?"""

    def __init__(self, roots: list[Path], includes: Iterable[str], excludes: Iterable[str]):
        self.roots = roots
        self.includes = (*DEFAULT_INCLUDES, *includes)
        # Asking for a default exclude by name (--reload-include '*.tmp') un-excludes it.
        self.excludes = tuple(p for p in DEFAULT_EXCLUDES if p not in self.includes)
        self.excludes += tuple(excludes)

    def __call__(self, change: Any, path: str) -> bool:
        relative = self._relative(Path(path))
        text = relative.as_posix()
        for pattern in self.excludes:
            stripped = pattern.rstrip("/")
            if any(fnmatch.fnmatch(part, stripped) for part in relative.parts):
                return False
            if fnmatch.fnmatch(text, stripped) or text.startswith(stripped + "/"):
                return False
        return any(
            fnmatch.fnmatch(relative.name, pattern) or fnmatch.fnmatch(text, pattern)
            for pattern in self.includes
        )

    def _relative(self, path: Path) -> Path:
        for root in self.roots:
            if path.is_relative_to(root):
                return path.relative_to(root)
        return Path(path.name)


class Watcher:
    """watchfiles in a daemon thread; :meth:`take` returns the changed paths gathered so far."""

    def __init__(self, roots: list[Path], watch_filter: ChangeFilter) -> None:
        self.roots = roots
        self.watch_filter = watch_filter
        self._stop = threading.Event()
        self._batches: queue.SimpleQueue[set[str]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="dualcorn-watch", daemon=True)
        self.error: BaseException | None = None

    def fileno(self) -> int:
        """Readable when a batch is waiting, for :func:`multiprocessing.connection.wait`."""
        return self._wake_r.fileno()

    def start(self) -> None:
        import watchfiles  # noqa: F401  (fail here, in the caller's thread, when missing)

        self._thread.start()

    def _run(self) -> None:
        import watchfiles

        try:
            for changes in watchfiles.watch(
                *self.roots,
                watch_filter=self.watch_filter,
                debounce=_DEBOUNCE_MS,
                step=_STEP_MS,
                stop_event=self._stop,
                raise_interrupt=False,
            ):
                self._batches.put({path for _, path in changes})
                self._wake_w.send(b"\0")
        except BaseException as exc:  # reported by the reloader, not lost in a thread
            self.error = exc
            self._wake_w.send(b"\0")

    def take(self) -> set[str]:
        self._wake_r.recv(4096)
        paths: set[str] = set()
        while True:
            try:
                paths |= self._batches.get_nowait()
            except queue.Empty:
                return paths

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._wake_r.close()
        self._wake_w.close()


def describe_changes(paths: Iterable[str]) -> str:
    """``'app/routes.py'`` or ``'a.py', 'b.py' and 3 more``, relative to the current directory."""
    cwd = Path.cwd()
    names = []
    for path in sorted(paths):
        candidate = Path(path)
        names.append(str(candidate.relative_to(cwd)) if candidate.is_relative_to(cwd) else path)
    shown = ", ".join(repr(name) for name in names[:5])
    if len(names) > 5:
        shown += f" and {len(names) - 5} more"
    return shown


def forget_bytecode(paths: Iterable[str]) -> None:
    """Delete the cached bytecode of changed modules.

    importlib trusts a ``.pyc`` whose recorded source mtime, in whole seconds, and size match
    (importlib._bootstrap_external._validate_timestamp_pyc).  An edit that keeps a module's
    size within the second it was last compiled (``v1`` -> ``v2``) would otherwise be served
    from the stale cache; the new process recompiles instead.
    """
    for path in paths:
        if not path.endswith(".py"):
            continue
        try:
            cached = importlib.util.cache_from_source(path)
        except (NotImplementedError, ValueError):
            continue
        with contextlib.suppress(OSError):
            os.unlink(cached)
