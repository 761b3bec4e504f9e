"""Every application becomes ASGI 3 here, before the server ever sees it (design rule 1)."""

from __future__ import annotations

import logging
from typing import Any

from dualcorn.adapters.detect import InterfaceName, describe, detect_interface
from dualcorn.config import Config

__all__ = ["adapt_app", "prepare_app"]

logger = logging.getLogger("dualcorn.error")


def prepare_app(config: Config) -> tuple[Any, InterfaceName]:
    """Load the configured app, decide its interface, and wrap it as ASGI 3.

    Returns the ASGI 3 callable and the interface it was served as.
    """
    return adapt_app(
        config.app,
        config,
        interface=config.interface,
        factory=config.factory,
        threads=config.threads,
    )


def adapt_app(
    app: Any,
    config: Config,
    *,
    interface: str,
    factory: bool = False,
    threads: int,
    where: str = "",
) -> tuple[Any, InterfaceName]:
    """Load one app (the main one or a mount's), decide its interface, wrap it as ASGI 3.

    ``where`` ("mounted at /legacy") is added to the start-up log line.
    """
    name = _name(app)
    if isinstance(app, str) or factory:
        from dualcorn.loading import load_app

        app = load_app(app, factory=factory, app_dir=config.app_dir, env_file=config.env_file)
    chosen: InterfaceName
    if interface == "auto":
        detection = detect_interface(app)
        chosen = detection.interface
        if detection.ambiguous:
            logger.warning("%s", detection.reason)
    else:
        chosen = interface  # type: ignore[assignment]  # validated by Config
    logger.info("%s: %s%s", describe(chosen), name, where)
    if chosen == "asgi2":
        from dualcorn.adapters.asgi2 import ASGI2Adapter

        return ASGI2Adapter(app), chosen
    if chosen == "wsgi":
        from dualcorn.adapters.wsgi import WSGIAdapter

        adapter = WSGIAdapter(
            app,
            threads=threads,
            multiprocess=config.workers > 1,
            queue=config.wsgi_queue,
            outbuf_overflow=config.wsgi_outbuf_overflow,
            outbuf_high_watermark=config.wsgi_outbuf_high_watermark,
        )
        return adapter, chosen
    return app, chosen


def _name(app: Any) -> str:
    if isinstance(app, str):
        return repr(app)
    return getattr(app, "__qualname__", None) or type(app).__qualname__
