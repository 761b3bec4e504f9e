"""Event loop choice, handed to ``asyncio.Runner(loop_factory=...)`` (no global policy)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dualcorn.errors import ConfigError

__all__ = ["loop_factory", "uvloop_available"]


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """``auto`` takes uvloop when it is installed, else asyncio's default loop."""
    if name == "asyncio" or (name == "auto" and not uvloop_available()):
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        raise ConfigError("loop 'uvloop' is not installed: pip install uvloop") from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
