"""Which HTTP/2 frame layer a server runs (``--http2-engine``), as ``--http`` picks HTTP/1.1's.

``h2`` (python-hyper) is the reference: pure Python, every SETTINGS value and window its to
enforce, about three times zttp's CPU per request through the whole connection.  ``zttp`` (a Zig
core, the one uvicorn 0.54's ``--http2`` runs on) is the fast path, behind the same events
(:mod:`~dualcorn.protocols.http2.engine_zttp` says how its gaps are closed).

``auto`` takes zttp when it is installed (``pip install 'dualcorn[zttp]'``, the release
:data:`ZTTP_VERIFIED` the engine was verified against) and the configuration fits its fixed
ceilings (at most :data:`ZTTP_MAX_STREAMS` concurrent streams, a head limit of at most
:data:`ZTTP_MAX_HEADER_LIST`), else h2 (said once at debug level), as ``--http auto`` takes
httptools when it is installed.  zttp's two lifetime counts per connection (4,096 streams, 256
resets), which would end a connection with an error however slowly a client reached them, are
met by a graceful GOAWAY before either (the client reconnects, RFC 9113 6.8; zttp_counts.py),
so they no longer keep ``auto`` on h2 (docs/http2.md, "Two engines").
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from functools import cache
from typing import TYPE_CHECKING, TypeAlias

from dualcorn.config import Config
from dualcorn.protocols.http2.engine import H2Engine
from dualcorn.protocols.http2.events import EngineSettings
from dualcorn.protocols.http2.limits import ZTTP_MAX_HEADER_LIST, ZTTP_MAX_STREAMS, FrameObserver

if TYPE_CHECKING:
    from dualcorn.protocols.http2.engine_zttp import ZttpEngine

    Engine: TypeAlias = H2Engine | ZttpEngine

__all__ = [
    "ZTTP_MAX_HEADER_LIST",
    "ZTTP_MAX_STREAMS",
    "ZTTP_VERIFIED",
    "engine_name",
    "frame_observer",
    "new_engine",
    "stream_cap",
    "zttp_installed",
    "zttp_misfit",
    "zttp_version",
]

_log = logging.getLogger("dualcorn.error")


# The zttp releases engine_zttp.py was verified against (the zttp extra's pin): auto takes no
# other, since the engine reads zttp's queued frames and mirrors its counts (zttp_counts.py).
ZTTP_VERIFIED = "0.0.35"


@cache
def zttp_installed() -> bool:
    return importlib.util.find_spec("zttp") is not None


@cache
def zttp_version() -> str | None:
    try:
        return importlib.metadata.version("zttp")
    except importlib.metadata.PackageNotFoundError:
        return None


def zttp_misfit(config: Config) -> str | None:
    """Why ``auto`` does not take zttp for this configuration, or None if it does."""
    if not zttp_installed():
        return "zttp is not installed (pip install 'dualcorn[zttp]')"
    version = zttp_version()
    if version is None or not (version == ZTTP_VERIFIED or version.startswith(ZTTP_VERIFIED + ".")):
        return f"zttp {version} is not the {ZTTP_VERIFIED} dualcorn was verified against"
    if config.http2_max_concurrent_streams > ZTTP_MAX_STREAMS:
        return f"--http2-max-concurrent-streams is over zttp's {ZTTP_MAX_STREAMS}"
    if config.limit_request_head > ZTTP_MAX_HEADER_LIST:
        return "--limit-request-head is over zttp's 64 KiB header list"
    return None


def engine_name(config: Config) -> str:
    """``h2`` or ``zttp`` for this configuration (``auto`` resolved)."""
    choice = config.http2_engine
    if choice != "auto":
        return choice
    return "h2" if _auto_misfit(config) else "zttp"


def _auto_misfit(config: Config) -> str | None:
    # Once per configuration (every connection asks), said once at debug.
    key = (config.http2_max_concurrent_streams, config.limit_request_head)
    if key not in _AUTO:
        reason = _AUTO[key] = zttp_misfit(config)
        if reason is not None:
            _log.debug("--http2-engine auto: h2, as %s", reason)
    return _AUTO[key]


_AUTO: dict[tuple[int, int], str | None] = {}


def new_engine(config: Config, settings: EngineSettings) -> Engine:
    if engine_name(config) == "zttp":
        from dualcorn.protocols.http2.engine_zttp import ZttpEngine

        return ZttpEngine(settings)
    return H2Engine(settings)


def stream_cap(config: Config, engine: Engine) -> int | None:
    """Streams one connection serves before its graceful GOAWAY: ``--http2-max-requests``.
    (The zttp engine also asks for one before zttp's own lifetime counts: ev.Recycle.)"""
    return config.http2_max_requests


def frame_observer(engine: Engine) -> FrameObserver | None:
    """What the flood guard tells of each frame header: the zttp engine keeps its own inbound
    windows from them (``h2`` parses every frame itself)."""
    return None if isinstance(engine, H2Engine) else engine
