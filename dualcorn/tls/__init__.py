"""TLS on dualcorn's own listener: the ``--ssl-*`` options (uvicorn's names and meanings).

:mod:`dualcorn.tls.context` turns the options into an :class:`ssl.SSLContext` with secure
defaults, failing with one actionable sentence; :mod:`dualcorn.tls.handshake` runs each
connection's handshake and hands the connection to the HTTP protocol with its ``tls`` scope
extension.  The server imports this package only when ``--ssl-certfile`` is given.
"""

from __future__ import annotations

from dualcorn.tls.context import ServerTLS, load_tls
from dualcorn.tls.handshake import TLSHandshake, tls_extension

__all__ = ["ServerTLS", "TLSHandshake", "load_tls", "tls_extension"]
