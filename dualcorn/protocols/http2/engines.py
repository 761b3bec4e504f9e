"""Which HTTP/2 frame layer a server runs (``--http2-engine``), as ``--http`` picks HTTP/1.1's.

``h2`` (python-hyper) is the reference: every SETTINGS value, the windows and the header rules
are its to enforce, and it costs about 80 us of CPU per request.  ``zttp`` (a Zig core, alpha)
is the fast path, about a twentieth of that, behind the same events
(:mod:`~dualcorn.protocols.http2.engine_zttp` says how its gaps are closed).  ``auto`` takes
zttp when it is installed and the limits configured fit within its own ceilings (at most 128
concurrent streams, a header list of at most 64 KiB); ``h2`` otherwise.  docs/http2.md has
the measurements and the attack tests both pass.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import TYPE_CHECKING, TypeAlias

from dualcorn.config import Config
from dualcorn.protocols.http2.engine import EngineSettings, H2Engine

if TYPE_CHECKING:
    from dualcorn.protocols.http2.engine_zttp import ZttpEngine

    Engine: TypeAlias = H2Engine | ZttpEngine

__all__ = ["engine_name", "new_engine", "stream_cap", "zttp_installed"]

# What engine_zttp was written and tested against; its ceilings are zttp 0.0.35's.
_ZTTP_STREAMS = 128
_ZTTP_HEADER_LIST = 65536


@cache
def zttp_installed() -> bool:
    return importlib.util.find_spec("zttp") is not None


def engine_name(config: Config) -> str:
    """``h2`` or ``zttp`` for this configuration (``auto`` resolved)."""
    choice = config.http2_engine
    if choice != "auto":
        return choice
    fits = (
        config.http2_max_concurrent_streams <= _ZTTP_STREAMS
        and config.limit_request_head <= _ZTTP_HEADER_LIST
    )
    return "zttp" if fits and zttp_installed() else "h2"


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
