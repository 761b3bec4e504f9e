"""An ASGI 2 "double callable" class, in the style of uvicorn's own examples."""

from typing import Any


class App:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]  # "startup" or "shutdown"
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if self.scope["type"] != "http":
            return
        await send(
            {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"text/plain")]}
        )  # fmt: skip
        await send({"type": "http.response.body", "body": b"hello from asgi2"})


app = App
