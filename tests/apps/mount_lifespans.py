"""Raw ASGI apps whose lifespans write "startup NAME"/"shutdown NAME" to $MOUNT_LIFESPAN_LOG."""

from __future__ import annotations

import os
from typing import Any


def _record(line: str) -> None:
    with open(os.environ["MOUNT_LIFESPAN_LOG"], "a") as log:
        log.write(line + "\n")


def _app(name: str, fail: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    _record(f"startup {name}")
                    if fail:
                        await send({"type": "lifespan.startup.failed", "message": "no database"})
                        return
                    await send({"type": "lifespan.startup.complete"})
                else:
                    _record(f"shutdown {name}")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = f"{name}|{scope['root_path']}|{scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


main = _app("main")
first = _app("first")
second = _app("second")
failing = _app("failing", fail=True)
