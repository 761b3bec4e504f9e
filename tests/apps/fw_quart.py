from quart import Quart

quart_app = Quart(__name__)


@quart_app.get("/")
async def hello() -> str:
    return "hello from quart"


app = quart_app
