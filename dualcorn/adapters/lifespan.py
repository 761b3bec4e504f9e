"""The ASGI lifespan protocol: startup before the first request, shutdown after the last.

``--lifespan auto`` runs it and treats an app that raises before answering startup as one that
does not speak lifespan (Django's ASGIHandler raises for any scope but http); ``on`` treats that
as a failure; ``off`` never calls the app with a lifespan scope.  A ``lifespan.startup.failed``
message, or an exception under ``on``, stops the server before it binds (exit status 3).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dualcorn.errors import StartupError

__all__ = ["Lifespan"]

logger = logging.getLogger("dualcorn.error")


class Lifespan:
    """Drives one app through the lifespan scope; ``state`` is shared into request scopes."""

    def __init__(
        self, app: Any, mode: str, state: dict[str, Any], *, announce: bool = True, label: str = ""
    ) -> None:
        self.app = app
        self.announce = announce  # False for WSGI apps: their adapter answers lifespan itself
        # With --mount, each line names its app: "Application startup complete (mount /api)."
        self._of = f" ({label})" if label else ""
        self.mode = mode
        self.state = state
        self.supported = mode != "off"
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1)
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._failure: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def startup(self, limit: float | None = None) -> None:
        """Run the startup; StartupError if it fails or takes longer than ``limit`` seconds."""
        if not self.supported:
            return
        if self.announce:
            logger.info("Waiting for application startup%s.", self._of)
        self._task = task = asyncio.get_running_loop().create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        try:
            # hypercorn startup_timeout: a startup that hangs (a database that never answers)
            # must stop the server, not hold a process that never listens.
            async with asyncio.timeout(limit):
                await self._startup_done.wait()
        except TimeoutError:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
            raise StartupError(
                f"Application startup did not complete in {limit:g} s (--timeout-lifespan)"
            ) from None
        if self._failure is not None:
            raise StartupError(f"Application startup failed: {self._failure}")
        if self.supported and self.announce:
            logger.info("Application startup complete%s.", self._of)

    async def shutdown(self, grace: float | None) -> None:
        if not self.supported or self._task is None or self._task.done():
            return
        if self.announce:
            logger.info("Waiting for application shutdown%s.", self._of)
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            async with asyncio.timeout(grace):
                await self._shutdown_done.wait()
        except TimeoutError:
            logger.error(
                "Application shutdown did not finish in %s s%s; cancelling it.", grace, self._of
            )
            self._task.cancel()
            return
        if self._failure is not None:
            logger.error("Application shutdown failed%s: %s", self._of, self._failure)
        elif self.announce:
            logger.info("Application shutdown complete%s.", self._of)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}  # fmt: skip
        try:
            await self.app(scope, self._inbox.get, self._send)
        except Exception as exc:
            if not self._startup_done.is_set() and self.mode == "auto":
                # ASGI spec: an app that does not support lifespan should raise; in auto mode
                # that is an answer, not an error.
                logger.info("ASGI 'lifespan' protocol appears unsupported (%s).", _short(exc))
                self.supported = False
            else:
                self._failure = _short(exc)
                logger.error("Exception in the 'lifespan' protocol", exc_info=exc)
        else:
            if not self._startup_done.is_set():
                if self.mode == "on":
                    self._failure = "the app returned without answering lifespan.startup"
                else:
                    self.supported = False
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._failure = message.get("message", "") or "lifespan.startup.failed"
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._failure = message.get("message", "") or "lifespan.shutdown.failed"
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"unexpected lifespan message {kind!r}")


def _short(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
