from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response


def hello(request: Request) -> Response:
    return Response(b"hello from pyramid", content_type="text/plain")


with Configurator() as config:
    config.add_route("hello", "/")
    config.add_view(hello, route_name="hello")
    app = config.make_wsgi_app()
