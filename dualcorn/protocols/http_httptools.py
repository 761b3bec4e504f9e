"""HTTP/1.1 connections whose header fields are tokenized by httptools (llhttp, in C).

The message loop, the request line, the policy and the body framing are shared
(:mod:`dualcorn.protocols.http1`).  llhttp is fed only the header section, behind a neutral
request line, with the framing fields renamed: it never frames a body, so its leniencies and
strictness there (``5; a=b`` refused, a queue of pipelined requests parsed ahead) no longer
change what the app sees.  Its callbacks collect the fields.
"""

from __future__ import annotations

import httptools

from dualcorn.errors import ProtocolError
from dualcorn.protocols.http1 import HTTP1Connection
from dualcorn.protocols.state import ServerState

__all__ = ["HttpToolsProtocol"]

# Same length as the names they stand for, so offsets stay put; renamed back after parsing.
_RENAMED = {b"x-ntent-length": b"content-length", b"x-ansfer-encoding": b"transfer-encoding"}
_LINES = {b"1.1": b"GET / HTTP/1.1", b"1.0": b"GET / HTTP/1.0"}
_OWS = (0x20, 0x09)


class HttpToolsProtocol(HTTP1Connection):
    def __init__(self, state: ServerState) -> None:
        super().__init__(state)
        self._headers: list[tuple[bytes, bytes]] = []
        self._parser = self._new_parser()

    def _new_parser(self) -> httptools.HttpRequestParser:
        parser = httptools.HttpRequestParser(self)
        # What follows a message is framed by dualcorn, not llhttp.
        parser.set_dangerous_leniencies(lenient_keep_alive=True, lenient_data_after_close=True)
        return parser

    def fields(self, head: bytes, version: bytes) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        self._headers = headers
        data = _LINES[version] + head[head.index(b"\r\n") :]
        lowered = data.lower()
        renamed = False
        for name in (b"\ncontent-length:", b"\ntransfer-encoding:"):
            at = lowered.find(name)
            while at != -1:
                data = data[: at + 1] + b"x-" + data[at + 3 :]
                renamed = True
                at = lowered.find(name, at + 1)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._parser = self._new_parser()  # llhttp stays paused after an Upgrade head
        except httptools.HttpParserError as exc:
            self._parser = self._new_parser()
            raise ProtocolError(f"malformed header section: {exc}") from None
        if renamed:
            headers[:] = [(_RENAMED.get(name, name), value) for name, value in headers]
        return headers

    # --- llhttp callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        # RFC 9110 5.5: OWS around a value is not part of it; llhttp keeps the trailing OWS.
        if value and value[-1] in _OWS:
            value = value.rstrip(b" \t")
        self._headers.append((name.lower(), value))
