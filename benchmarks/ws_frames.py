"""Why dualcorn reads WebSocket frames with ``websockets`` rather than ``wsproto``.

Both libraries are sans-IO and pass the Autobahn suite; this measures the part a server pays
for on every message: parsing masked client frames (and, for text, dualcorn's UTF-8 check, which
wsproto does itself) and serializing server frames.  It prints ratios, wsproto / websockets, from
one run on one machine: ``python benchmarks/ws_frames.py``.
"""

from __future__ import annotations

import codecs
import os
import time

from websockets.frames import Frame
from websockets.protocol import CLIENT, OPEN, SERVER, Protocol
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

READ = 65536  # bytes per simulated socket read


def client_bytes(count: int, size: int, binary: bool) -> bytes:
    client = Protocol(CLIENT, state=OPEN, max_size=None)
    payload = os.urandom(size) if binary else b"a" * size
    for _ in range(count):
        (client.send_binary if binary else client.send_text)(payload)
    return b"".join(client.data_to_send())


def parse_websockets(data: bytes, text: bool) -> float:
    start = time.perf_counter()
    server = Protocol(SERVER, state=OPEN, max_size=None)
    decode = codecs.getincrementaldecoder("utf-8")().decode
    for i in range(0, len(data), READ):
        server.receive_data(data[i : i + READ])
        for frame in server.events_received():
            # After the handshake the frame layer yields only frames.
            if text and isinstance(frame, Frame):
                decode(frame.data, frame.fin)
    return time.perf_counter() - start


def parse_wsproto(data: bytes) -> float:
    start = time.perf_counter()
    # wsproto's Connection is its frame layer after the handshake, like websockets' Protocol.
    conn = Connection(ConnectionType.SERVER)
    for i in range(0, len(data), READ):
        conn.receive_data(data[i : i + READ])
        for _ in conn.events():
            pass
    return time.perf_counter() - start


def send_websockets(count: int, size: int) -> float:
    server, payload = Protocol(SERVER, state=OPEN), b"a" * size
    start = time.perf_counter()
    for _ in range(count):
        server.send_text(payload)
        server.data_to_send()
    return time.perf_counter() - start


def send_wsproto(count: int, size: int) -> float:
    conn, text = Connection(ConnectionType.SERVER), "a" * size
    start = time.perf_counter()
    for _ in range(count):
        conn.send(TextMessage(data=text))
    return time.perf_counter() - start


def main() -> None:
    for count, size, binary in ((10_000, 20, False), (10_000, 1024, True), (4, 4 << 20, True)):
        data = client_bytes(count, size, binary)
        a = min(parse_websockets(data, not binary) for _ in range(3))
        b = min(parse_wsproto(data) for _ in range(3))
        kind = "binary" if binary else "text"
        print(f"read {count} x {size} B {kind}: websockets {a * 1e3:.1f} ms, "
              f"wsproto {b * 1e3:.1f} ms, ratio {b / a:.1f}")  # fmt: skip
    for count, size in ((10_000, 20), (10_000, 1024)):
        a = min(send_websockets(count, size) for _ in range(3))
        b = min(send_wsproto(count, size) for _ in range(3))
        print(f"write {count} x {size} B text: websockets {a * 1e3:.1f} ms, "
              f"wsproto {b * 1e3:.1f} ms, ratio {b / a:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
