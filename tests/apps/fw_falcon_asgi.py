import falcon
import falcon.asgi


class Hello:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "hello from falcon asgi"


app = falcon.asgi.App()
app.add_route("/", Hello())
