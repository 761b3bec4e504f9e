"""The request head every parser produces, and the facts the policy derives from it.

A parser (h11, llhttp) only tokenizes: it turns the bytes of one head into a
:class:`RequestHead`.  Everything that decides whether the request is served, and how its
body is framed, is :mod:`dualcorn.protocols.policy`'s job, written once for every parser.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["HeadFacts", "RequestHead"]


class RequestHead(NamedTuple):
    """One request head as tokenized: names lower-case, values without surrounding OWS.

    Immutable like a frozen dataclass, and built once per request: a NamedTuple costs a
    quarter of a frozen dataclass's construction on the hot path.
    """

    method: bytes
    target: bytes
    version: bytes  # b"1.1" or b"1.0"
    headers: list[tuple[bytes, bytes]]


class HeadFacts:
    """What the connection needs to know of a checked head, gathered in one pass.

    Read-only once :func:`~dualcorn.protocols.policy.check_head` returned it: the facts of a
    head with nothing to say (no body, no Connection, Expect or Upgrade) are one shared object.
    """

    __slots__ = (
        "chunked", "close", "content_length", "expect_continue", "keep_alive_token", "upgrade",
    )  # fmt: skip

    def __init__(self) -> None:
        self.content_length: int | None = None
        self.chunked = False
        self.close = False  # "Connection: close" was sent
        self.keep_alive_token = False  # "Connection: keep-alive" was sent (matters for 1.0)
        self.expect_continue = False
        self.upgrade = False  # an Upgrade field was sent (a WebSocket handshake, perhaps)

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)
