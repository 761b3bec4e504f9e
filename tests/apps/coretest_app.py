"""A raw ASGI app for the core's subprocess tests: lifespan, a slow path, progress on stdout.

``/slow?SECONDS`` sleeps before answering; "slow started" and "slow done" are printed (and
flushed) so a test can tell the request is in flight before it signals the server.
"""

import asyncio
import sys


def say(text: str) -> None:
    print(text, flush=True)
    sys.stdout.flush()


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                say("lifespan startup")
                await send({"type": "lifespan.startup.complete"})
            else:
                say("lifespan shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":
        say("slow started")
        await asyncio.sleep(float(scope["query_string"] or b"1"))
        say("slow done")
    body = f"{scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
