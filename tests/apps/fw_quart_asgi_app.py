"""Quart's bound ``asgi_app`` method, the hook people wrap with ASGI middleware."""

from tests.apps.fw_quart import quart_app

app = quart_app.asgi_app
