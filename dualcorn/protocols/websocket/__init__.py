"""WebSockets (RFC 6455) over an HTTP/1.1 upgrade, on the ``websockets`` sans-IO protocol.

``handshake`` checks the opening handshake and writes its answer, ``session`` drives the ASGI
``websocket`` interface, ``inbox`` and ``reader`` bound what a client can make it hold.
Nothing here imports ``websockets`` until a session starts, so a server without the package
still loads.
"""
