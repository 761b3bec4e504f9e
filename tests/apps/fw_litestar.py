from litestar import Litestar, MediaType, get


@get("/", media_type=MediaType.TEXT)
async def hello() -> str:
    return "hello from litestar"


app = Litestar(route_handlers=[hello])
