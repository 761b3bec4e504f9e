"""Which HTTP/2 frame layer a server runs (``--http2-engine``), as ``--http`` picks HTTP/1.1's.

``h2`` (python-hyper) is the reference: every SETTINGS value, the windows and the header rules
are its to enforce, and it costs about 80 us of CPU per request.  ``zttp`` (a Zig core, alpha)
is the fast path, about a twentieth of that, behind the same events
(:mod:`~dualcorn.protocols.http2.engine_zttp` says how its gaps are closed).  ``auto`` takes
``h2`` for now: zttp 0.0.35 ends a connection at 4,096 streams, and at its 256th cancelled
stream however slowly they come (its missing HPACK table size update is added by dualcorn:
zttp_hpack.py), so the fast path is chosen explicitly, with ``--http2-engine zttp``
(docs/http2.md has the measurements, the differences and when ``auto`` should change).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import TYPE_CHECKING, TypeAlias

from dualcorn.config import Config
from dualcorn.protocols.http2.engine import H2Engine
from dualcorn.protocols.http2.events import EngineSettings
from dualcorn.protocols.http2.limits import FrameObserver

if TYPE_CHECKING:
    from dualcorn.protocols.http2.engine_zttp import ZttpEngine

    Engine: TypeAlias = H2Engine | ZttpEngine

__all__ = ["engine_name", "frame_observer", "new_engine", "stream_cap", "zttp_installed"]


@cache
def zttp_installed() -> bool:
    return importlib.util.find_spec("zttp") is not None


def engine_name(config: Config) -> str:
    """``h2`` or ``zttp`` for this configuration (``auto`` resolved)."""
    choice = config.http2_engine
    if choice != "auto":
        return choice
    return "h2"  # until zttp lifts its stream and cancellation counts (see the module notes)


def new_engine(config: Config, settings: EngineSettings) -> Engine:
    if engine_name(config) == "zttp":
        from dualcorn.protocols.http2.engine_zttp import ZttpEngine

        return ZttpEngine(settings)
    return H2Engine(settings)


def stream_cap(config: Config, engine: Engine) -> int | None:
    """Streams one connection serves before its graceful GOAWAY: ``--http2-max-requests``,
    and below zttp's hard limit (it ends a connection at its 4,097th stream)."""
    cap = config.http2_max_requests
    if not isinstance(engine, H2Engine):
        from dualcorn.protocols.http2.engine_zttp import GRACEFUL_STREAMS

        cap = GRACEFUL_STREAMS if cap is None else min(cap, GRACEFUL_STREAMS)
    return cap


def frame_observer(engine: Engine) -> FrameObserver | None:
    """What the flood guard tells of each frame header: the zttp engine keeps its own inbound
    windows from them (``h2`` parses every frame itself)."""
    return None if isinstance(engine, H2Engine) else engine
