"""A raw ASGI app for the process and platform tests (systemd, log reopening, shutdown delay).

``/env`` answers the systemd variables this process sees (none, once dualcorn has read them)
and its pid; ``/headers`` the request headers, ``/scope`` its scheme, client and server;
``/slow?SECONDS`` sleeps first; anything else answers its method and path.
"""

import asyncio
import json
import os

_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC")


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/env":
        seen = {name: os.environ.get(name) for name in _VARIABLES}
        body = json.dumps({"pid": os.getpid(), "env": seen}).encode()
    elif scope["path"] == "/headers":
        body = json.dumps({k.decode(): v.decode() for k, v in scope["headers"]}).encode()
    elif scope["path"] == "/scope":
        seen = {"scheme": scope["scheme"], "client": scope["client"], "server": scope["server"]}
        body = json.dumps(seen).encode()
    else:
        if scope["path"] == "/slow":
            await asyncio.sleep(float(scope["query_string"] or b"1"))
        body = f"{scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
