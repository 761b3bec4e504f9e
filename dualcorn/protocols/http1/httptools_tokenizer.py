"""HTTP/1.1 connections whose header fields are tokenized by httptools (llhttp, in C).

The message loop, the request line, the policy and the body framing are shared
(:mod:`dualcorn.protocols.http1.messages`).  llhttp is fed only the header section, behind a neutral
request line, with the framing fields renamed: it never frames a body, so its leniencies and
strictness there (``5; a=b`` refused, a queue of pipelined requests parsed ahead) no longer
change what the app sees.  Its callbacks collect the fields.
"""

from __future__ import annotations

import httptools

from dualcorn.errors import ProtocolError
from dualcorn.protocols.http1.messages import HTTP1Connection
from dualcorn.protocols.state import ServerState

__all__ = ["HttpToolsProtocol"]

# llhttp would frame the body by these (and refuse values the policy reads its own way):
# their first two letters become "x-" for llhttp, and the names are restored after parsing.
_FRAMING = (b"\ncontent-length:", b"\ntransfer-encoding:")
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
        renamed: list[tuple[int, bytes]] = []
        for name in _FRAMING:
            at = lowered.find(name)
            while at != -1:
                # One field per line (obs-fold is refused before): the number of line ends
                # before this one is the field's index in what llhttp reports.
                renamed.append((data.count(b"\n", 0, at), name[1:-1]))
                data = data[: at + 1] + b"x-" + data[at + 3 :]
                at = lowered.find(name, at + 1)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._parser = self._new_parser()  # llhttp stays paused after an Upgrade head
        except httptools.HttpParserError as exc:
            self._parser = self._new_parser()
            raise ProtocolError(f"malformed header section: {exc}") from None
        for index, name in renamed:
            # Only the fields renamed here: a client's own "X-ntent-Length" stays what it is.
            headers[index] = (name, headers[index][1])
        return headers

    # --- llhttp callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        # RFC 9110 5.5: OWS around a value is not part of it; llhttp keeps the trailing OWS.
        if value and value[-1] in _OWS:
            value = value.rstrip(b" \t")
        self._headers.append((name.lower(), value))
