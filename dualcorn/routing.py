"""Several apps and static directories behind one listener: a dualcorn-owned ASGI 3 router.

Theory of operation
-------------------
Without ``--mount`` or ``--static`` the server calls the app directly and this module only runs
its lifespan (:class:`AppSet`).  With them, :class:`Router` sits at the ASGI seam in front of
every loaded app: each mounted app is loaded, detected and adapted on its own (a WSGI mount gets
its own thread pool), so the protocols still see one ASGI 3 callable and never learn that some
of it is WSGI.

Matching is by longest prefix, on whole segments of the *raw* request path, each segment
percent-decoded on its own: ``/api`` matches ``/api`` and ``/api/x`` but not ``/apix``, and
``/api%2Fx`` is one segment ``api/x`` that equals no mount, so an encoded slash never crosses
a mount boundary.  The chosen app gets a copy of the scope with ``root_path`` extended by the
mount path and ``path`` left whole: the ASGI spec defines ``root_path`` as WSGI's SCRIPT_NAME and
says "PATH_INFO can be derived by stripping root_path from path", so ``path`` includes it
(Starlette >= 0.35 and the WSGI adapter both read it that way; ``url_for`` then works in each).
``raw_path`` stays the bytes the client sent.  The server's scope is marked with
``"dualcorn.mount"``, which the access log prints.

Lifespan runs for every ASGI mount: startup in command-line order (main APP first), shutdown
in reverse; a failed startup shuts down the ones already started and stops the server (exit
status 3) with an error that names the mount.  Each mount keeps its own lifespan ``state``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from dualcorn.adapters import adapt_app
from dualcorn.adapters.capabilities import Capabilities, capabilities
from dualcorn.adapters.lifespan import Lifespan
from dualcorn.config import Config
from dualcorn.errors import StartupError

__all__ = ["AppSet", "Router", "build_apps"]

logger = logging.getLogger("dualcorn.error")
MOUNT_KEY = "dualcorn.mount"


@dataclass
class Served:
    """One loaded app and where it is mounted ("" for the main APP at /)."""

    prefix: str
    label: str
    app: Any
    interface: str
    state: dict[str, Any] = field(default_factory=dict)
    segments: tuple[bytes, ...] = ()
    lifespan: Lifespan | None = None


class AppSet:
    """The ASGI 3 callable the server serves, and the lifespans and pools behind it."""

    def __init__(self, app: Any, interface: str, served: list[Served]) -> None:
        self.app = app
        self.interface = interface
        self.served = served
        self._started: list[Served] = []

    async def startup(self, config: Config, server_state: dict[str, Any]) -> None:
        """Lifespan startup for each app in order; the main app shares the server's state."""
        routed = len(self.served) > 1 or isinstance(self.app, Router)
        for served in self.served:
            if routed and served.interface == "wsgi":
                continue  # the adapter's pool is closed in shutdown(); it has no lifespan
            if served.prefix == "":
                served.state = server_state
            label = served.label if routed and served.prefix else ""
            # A WSGI app has no lifespan of its own (the adapter answers): nothing to announce.
            served.lifespan = Lifespan(
                served.app, config.lifespan, served.state,
                announce=served.interface != "wsgi", label=label,
            )  # fmt: skip
            try:
                await served.lifespan.startup(config.timeout_lifespan)
            except StartupError as exc:
                await self.shutdown(config)
                if routed:
                    raise StartupError(f"{served.label}: {exc}") from exc
                raise
            self._started.append(served)

    async def shutdown(self, config: Config, pool_grace: float | None = None) -> None:
        """Every WSGI pool first, then lifespan shutdown in reverse order.

        The pools are dualcorn's, not the apps': they close within what is left of the one
        grace period (``pool_grace``), so stuck threads cannot stretch the shutdown, and a WSGI
        adapter's own lifespan then finds its pool gone and completes at once.
        """
        if pool_grace is None:
            pool_grace = config.timeout_graceful_shutdown
        for served in reversed(self.served):
            close = capabilities(served.app).close
            if close is not None:
                await _close_pool(close, pool_grace)
        grace = _lifespan_grace(config)
        while self._started:
            served = self._started.pop()
            assert served.lifespan is not None
            await served.lifespan.shutdown(grace)


def build_apps(config: Config) -> AppSet:
    """Load the main APP and every mount; put a Router in front when there is more than one."""
    main, interface = adapt_app(
        config.app, config, interface=config.interface, factory=config.factory,
        threads=config.threads,
    )  # fmt: skip
    root = Served("", "the main app", main, interface)
    if not config.mounts and not config.static:
        return AppSet(main, interface, [root])
    served = [root]
    for mount in config.mounts:
        where = f" mounted at {mount.path}"
        app, kind = adapt_app(
            mount.app, config, interface=mount.interface, threads=mount.threads or config.threads,
            where=where,
        )  # fmt: skip
        served.append(Served(mount.path, f"mount {mount.path}", app, kind))
    from dualcorn.static import StaticFiles

    statics = []
    for entry in config.static:
        logger.info("Static files: %s at %s", entry.directory, entry.path)
        statics.append((entry.path, StaticFiles(entry.directory, config)))
    router = Router(served, statics)
    # Upgrades are WebSocket sessions when any app can take them; otherwise plain HTTP.
    kind = "asgi3" if any(s.interface != "wsgi" for s in served) else "wsgi"
    return AppSet(router, kind, served)


def _segments(prefix: str) -> tuple[bytes, ...]:
    return tuple(s.encode("utf-8") for s in prefix.split("/")[1:]) if prefix != "/" else ()


class Router:
    """Dispatch each scope to the app or static directory with the longest matching prefix."""

    def __init__(self, served: list[Served], statics: list[tuple[str, Any]]) -> None:
        for entry in served:
            entry.segments = _segments(entry.prefix) if entry.prefix else ()
        # Longest first: the first match is the longest one.
        self.apps = sorted(served, key=lambda s: len(s.segments), reverse=True)
        self.statics = sorted(
            ((_segments(path), path, files) for path, files in statics),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    def dualcorn_capabilities(self) -> Capabilities:
        """WebSockets when any app behind the router takes them; the pools close per app."""
        return Capabilities(websockets=any(capabilities(s.app).websockets for s in self.apps))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            raise ValueError(f"the router serves http and websocket scopes, not {kind!r}")
        raw: bytes = scope["raw_path"]
        parts = raw.split(b"/")[1:] if raw[:1] == b"/" else []
        decoded = [unquote_to_bytes(p) if b"%" in p else p for p in parts]
        served = self._app_for(decoded)
        for prefix, path, files in self.statics:
            if len(prefix) < len(served.segments):
                break  # a longer app mount wins over a shorter static one
            if _starts_with(decoded, prefix):
                scope[MOUNT_KEY] = f"static:{path}"
                rest = parts[len(prefix) :]
                if await files(scope, receive, send, rest):
                    return
                break  # --static-fallthrough: the app below answers instead
        scope[MOUNT_KEY] = served.prefix or "/"
        if not served.prefix:
            await served.app(scope, receive, send)
            return
        child = dict(scope)
        child["root_path"] = scope.get("root_path", "") + served.prefix
        child["state"] = served.state.copy()
        await served.app(child, receive, send)

    def _app_for(self, decoded: list[bytes]) -> Served:
        for served in self.apps:
            if _starts_with(decoded, served.segments):
                return served
        raise AssertionError("the main app at / matches every path")


def _starts_with(decoded: list[bytes], prefix: tuple[bytes, ...]) -> bool:
    # A decoded segment holding "/" (from %2F) equals no prefix segment: prefixes have none.
    return len(decoded) >= len(prefix) and all(
        decoded[i] == segment for i, segment in enumerate(prefix)
    )


def _lifespan_grace(config: Config) -> float | None:
    """The lifespan shutdown gets the graceful timeout, and never more than --timeout-lifespan."""
    limits = (config.timeout_graceful_shutdown, config.timeout_lifespan)
    given = [limit for limit in limits if limit is not None]
    return min(given) if given else None


async def _close_pool(close: Any, grace: float | None) -> None:
    """Stop a WSGI thread pool, whatever --lifespan said: the pool is dualcorn's, not the app's.

    A thread stuck in the app cannot be interrupted; after the grace period it is left behind
    rather than holding the process forever, and the log says which requests it was running.
    """
    stuck = await close(grace)
    if stuck:
        logger.warning(
            "%d WSGI thread(s) still in the app when the grace period ended; exiting without "
            "them. Abandoned: %s",
            len(stuck),
            ", ".join(stuck),
        )
