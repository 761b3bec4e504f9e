"""HTTP/1.1 connections whose header fields are tokenized by zttp (a Zig HTTP parser).

zttp is the parser uvicorn 0.54 offers as ``--http zttp``.  Here, as with httptools
(:mod:`~dualcorn.protocols.http1.httptools_tokenizer`), it only tokenizes: the message loop,
the request line, the policy and the body framing are dualcorn's own
(:mod:`~dualcorn.protocols.http1.messages`).  zttp is fed the header section behind a neutral
request line, with the framing fields renamed, so it never frames a body and never refuses a
Content-Length or Transfer-Encoding value the policy reads its own way (RFC 9112 6.1, 6.3:
one reading of the framing, the policy's).  What it returns is a complete request with no
body, after which it is reset for the next head.

zttp keeps trailing OWS out of a value (RFC 9110 5.5) and refuses control bytes in a value and
a malformed field line, as the other tokenizers do; the differential fuzzer
(tests/test_differential.py) runs it beside h11 and httptools.
"""

from __future__ import annotations

import zttp

from dualcorn.errors import ProtocolError
from dualcorn.protocols.http1.messages import HTTP1Connection
from dualcorn.protocols.state import ServerState

__all__ = ["ZttpProtocol"]

# zttp would frame the body by these: their first two letters become "x-" while zttp reads the
# section, and the names are restored after (the same trick as the httptools tokenizer).
_FRAMING = (b"\ncontent-length:", b"\ntransfer-encoding:")
# HTTP/1.0, whatever the request's version: zttp enforces HTTP/1.1's "exactly one Host"
# (RFC 9112 3.2) itself, ahead of the policy, which would refuse such a request with another
# status when an earlier field is refused first (Transfer-Encoding: gzip is a 501).  The Host
# rule is the policy's, checked there for every tokenizer.
_LINE = b"GET / HTTP/1.0"
_SERVER = zttp.SERVER


class ZttpProtocol(HTTP1Connection):
    def __init__(self, state: ServerState) -> None:
        super().__init__(state)
        self._parser = zttp.H1Connection(_SERVER)

    def fields(self, head: bytes, version: bytes) -> list[tuple[bytes, bytes]]:
        data = _LINE + head[head.index(b"\r\n") :]
        lowered = data.lower()
        renamed: list[tuple[int, bytes]] | None = None
        for name in _FRAMING:
            at = lowered.find(name)
            while at != -1:
                # One field per line (obs-fold is refused before): the number of line ends
                # before this one is the field's index in what zttp reports.
                if renamed is None:
                    renamed = []
                renamed.append((data.count(b"\n", 0, at), name[1:-1]))
                data = data[: at + 1] + b"x-" + data[at + 3 :]
                at = lowered.find(name, at + 1)
        parser = self._parser
        try:
            event = parser.receive_event(data)
        except zttp.ProtocolError as exc:
            self._parser = zttp.H1Connection(_SERVER)
            raise ProtocolError(f"malformed header section: {exc}") from None
        if type(event) is not zttp.Request:
            # A complete head with no framing fields is always a whole request to zttp.
            self._parser = zttp.H1Connection(_SERVER)
            raise ProtocolError("malformed header section")
        headers = event.headers
        if isinstance(headers, list):  # not for HTTP/1 today: zttp hands a HeaderBlock
            fields = [(name.lower(), value) for name, value in headers]
        else:
            fields = headers.to_list(lowercase_names=True)
        parser.start_next_cycle()
        if renamed is not None:
            for index, name in renamed:
                # Only the fields renamed here: a client's own "X-ntent-Length" stays as it is.
                fields[index] = (name, fields[index][1])
        return fields
