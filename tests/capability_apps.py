"""Importable apps for tests/test_capabilities.py's router case (mounts take import strings)."""

from tests.test_capabilities import asgi_echo, wsgi_app

__all__ = ["asgi_echo", "wsgi_app"]
