"""HTTP/1.1 over asyncio: the per-connection protocols and the request cycle they share."""

from __future__ import annotations

from typing import Any

from dualcorn.errors import ConfigError

__all__ = ["protocol_class"]


def protocol_class(name: str) -> Any:
    """The connection class for ``--http``; ``auto`` takes httptools when it is available."""
    if name == "zttp":
        try:
            from dualcorn.protocols.http1.zttp_tokenizer import ZttpProtocol
        except ImportError:
            raise ConfigError("http 'zttp' is not installed: pip install zttp") from None
        return ZttpProtocol
    if name in ("auto", "httptools"):
        try:
            from dualcorn.protocols.http1.httptools_tokenizer import HttpToolsProtocol
        except ImportError:
            if name == "httptools":
                raise ConfigError(
                    "http 'httptools' is not installed: pip install httptools"
                ) from None
        else:
            return HttpToolsProtocol
    from dualcorn.protocols.http1.h11_tokenizer import H11Protocol

    return H11Protocol
