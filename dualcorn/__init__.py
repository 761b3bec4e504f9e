"""dualcorn: one production HTTP server for every Python web application (ASGI and WSGI)."""

from __future__ import annotations

__version__ = "0.1.0"

from dualcorn.config import Config
from dualcorn.main import run
from dualcorn.server import Server

__all__ = ["Config", "Server", "__version__", "run"]
