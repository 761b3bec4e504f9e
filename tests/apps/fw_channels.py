"""Channels routing to an AsyncHttpConsumer: ProtocolTypeRouter around a URLRouter."""

from channels.generic.http import AsyncHttpConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from tests.apps import django_site  # noqa: F401  # configures settings first


class Hello(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_response(
            200, b"hello from channels", headers=[(b"content-type", b"text/plain")]
        )


url_router = URLRouter([path("", Hello.as_asgi())])
app = ProtocolTypeRouter({"http": url_router})
