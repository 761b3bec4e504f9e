"""``dualcorn.run``: the blocking Python entry point, the same paths the CLI takes."""

from __future__ import annotations

from typing import Any

from dualcorn.config import Config
from dualcorn.server import Server

__all__ = ["run", "serve_config"]


def run(app: Any, **options: Any) -> None:
    """Serve ``app`` (a callable or an import string such as ``"main:app"``) until stopped.

    Options are :class:`~dualcorn.Config`'s fields (the CLI's long options with ``_`` for ``-``).
    Raises :class:`~dualcorn.errors.LoadError` or :class:`~dualcorn.errors.StartupError` when
    the server cannot start.
    """
    serve_config(Config(app=app, **options))


def serve_config(config: Config) -> None:
    """Run one server, or the supervisor that ``reload`` or ``workers`` ask for."""
    if config.tls and (config.reload or config.workers > 1):
        from dualcorn.tls import load_tls

        # Each server process reads the certificate files itself; reading them here first
        # stops a broken file with one clear error before any process starts.
        load_tls(config)
    if config.metrics_port is not None:
        from dualcorn.metrics import require_prometheus

        require_prometheus()  # one line naming the extra, before anything starts
    if config.reload:
        from dualcorn.supervisors.reload import run_reloader

        run_reloader(config)
    elif config.workers > 1:
        from dualcorn.supervisors.workers import run_workers

        run_workers(config)
    else:
        from dualcorn import systemd

        server = Server(config)
        systemd.attach(server, systemd.notifier())
        server.run()
