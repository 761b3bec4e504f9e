"""zttp's lifetime counts per connection, and where the zttp engine ends a connection first.

Theory of operation.  zttp 0.0.35 bounds what one connection may ever do with two fixed counts
(``Limits.max_streams`` and ``max_stream_resets`` in its ``src/core/h2/connection.zig``; no
setting moves them).  Passing either is a connection error, GOAWAY ENHANCE_YOUR_CALM, however
slowly the client got there: a long-lived gRPC or browser connection that cancels a call now
and then would be cut after its 256th cancellation.  What zttp counts was measured on a real
server (``tests/test_http2_zttp_counts.py``) and read in its source:

* **Streams opened** (:data:`STREAMS_PER_CONNECTION`): every request head it reads, whether
  dualcorn serves it or refuses it (400, 413, 503), but not one zttp refuses itself past its
  128 concurrent streams.  The 4,097th ends the connection.
* **Streams reset** (:data:`RESETS_PER_CONNECTION`): an RST_STREAM from the client on a stream
  zttp still holds (its app is running, or the client is still sending), and zttp's own reset
  of a malformed request (a bad field, a body short of its Content-Length, bad trailers).  Not
  counted: a client's RST_STREAM on a stream answered and closed both ways, or on one the
  server reset; the server's own resets (timeouts, 413 while the client sends,
  REFUSED_STREAM).  The 257th ends the connection.

The zttp engine counts the same from zttp's own events (a client's reset reaches it as an
event only on a stream zttp held) and the flood guard's frame headers (the highest stream id),
and asks the connection for its graceful end (RFC 9113 6.8, the path of the stream cap:
``ends.py``) before either count is reached, leaving room for what a client may still do
until it has read the GOAWAY.  The client opens a new connection; no request is lost.  The
flood guard (``limits.FloodGuard``) stays the Rapid Reset defence: a rate, on both engines.
"""

from __future__ import annotations

from dualcorn.protocols.http2.limits import ZTTP_MAX_STREAMS

__all__ = [
    "GRACEFUL_STREAMS", "LAST_GRACEFUL_ID", "RESETS_PER_CONNECTION", "RESET_MARGIN",
    "STREAMS_PER_CONNECTION", "graceful_resets",
]  # fmt: skip

STREAMS_PER_CONNECTION = 4096
RESETS_PER_CONNECTION = 256
# The graceful GOAWAY leaves room for the streams a client sends before it sees it (at most
# a round trip of them, each bounded by the concurrent-stream limit).
GRACEFUL_STREAMS = STREAMS_PER_CONNECTION - 2 * ZTTP_MAX_STREAMS
# Client stream ids are odd and rise (RFC 9113 5.1.1): past this id, zttp opened at least
# GRACEFUL_STREAMS streams (more ids than streams only if the client skipped some).
LAST_GRACEFUL_ID = 2 * GRACEFUL_STREAMS - 1
# Resets a client may still cause after the graceful GOAWAY besides one per stream then open:
# streams it opens and cancels, or malformed requests it sends, before it has read the
# GOAWAY (two round trips: at the cap the GOAWAY waits for a PING, ends.py).
RESET_MARGIN = 32


def graceful_resets(max_streams: int) -> int:
    """Resets after which a connection ends gracefully.

    After the GOAWAY every stream then open (at most ``max_streams``, and zttp counts a reset
    only on a stream it holds) may still be cancelled, and :data:`RESET_MARGIN` more, before
    zttp's count is passed: 256 - 100 - 32 = 124 with the default 100 concurrent streams,
    256 - 128 - 32 = 96 with zttp's 128."""
    return RESETS_PER_CONNECTION - min(max_streams, ZTTP_MAX_STREAMS) - RESET_MARGIN
