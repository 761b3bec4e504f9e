"""Every application becomes ASGI 3 here, before the server ever sees it (design rule 1)."""

from __future__ import annotations

import logging
from typing import Any

from dualcorn.adapters.detect import InterfaceName, describe, detect_interface
from dualcorn.config import Config

__all__ = ["prepare_app"]

logger = logging.getLogger("dualcorn.error")


def prepare_app(config: Config) -> tuple[Any, InterfaceName]:
    """Load the configured app, decide its interface, and wrap it as ASGI 3.

    Returns the ASGI 3 callable and the interface it was served as.
    """
    app = config.app
    if isinstance(app, str) or config.factory:
        from dualcorn.loading import load_app

        app = load_app(
            app, factory=config.factory, app_dir=config.app_dir, env_file=config.env_file
        )
    interface: InterfaceName
    if config.interface == "auto":
        detection = detect_interface(app)
        interface = detection.interface
        if detection.ambiguous:
            logger.warning("%s", detection.reason)
    else:
        interface = config.interface
    logger.info("%s: %s", describe(interface), _name(config.app))
    if interface == "asgi2":
        from dualcorn.adapters.asgi2 import ASGI2Adapter

        return ASGI2Adapter(app), interface
    if interface == "wsgi":
        from dualcorn.adapters.wsgi import WSGIAdapter

        adapter = WSGIAdapter(
            app,
            threads=config.threads,
            multiprocess=config.workers > 1,
            queue=config.wsgi_queue,
            outbuf_overflow=config.wsgi_outbuf_overflow,
            outbuf_high_watermark=config.wsgi_outbuf_high_watermark,
        )
        return adapter, interface
    return app, interface


def _name(app: Any) -> str:
    if isinstance(app, str):
        return repr(app)
    return getattr(app, "__qualname__", None) or type(app).__qualname__
