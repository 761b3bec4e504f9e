"""dualcorn's small error vocabulary.

Every error the server raises on purpose is a :class:`DualcornError`.  Protocol errors carry the
HTTP status they map to, the way h11's ``error_status_hint`` does, so the connection layer answers
them without a table of its own.  App-contract errors say what the application did wrong.
"""

from __future__ import annotations

__all__ = [
    "AppContractError",
    "ConfigError",
    "DualcornError",
    "LoadError",
    "ProtocolError",
    "StartupError",
]


class DualcornError(Exception):
    """Base of every error dualcorn raises on purpose."""


class ConfigError(DualcornError, ValueError):
    """An option is unknown, out of range, or conflicts with another; the message names it."""


class LoadError(DualcornError):
    """The application could not be imported or is not something dualcorn can serve.

    The CLI prints the message (no traceback unless the traceback is the app's own) and exits 3.
    """

    show_traceback = False  # True where the cause is the app's own code (see loading.py)


class StartupError(DualcornError):
    """The server could not start: a failed bind, or the app's lifespan startup failed."""


class ProtocolError(DualcornError):
    """The client broke HTTP; ``status`` is the answer it gets before the connection closes."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class AppContractError(DualcornError, RuntimeError):
    """The application broke the ASGI or WSGI contract (message order, start_response misuse)."""
