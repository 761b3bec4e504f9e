"""A Starlette app wrapped by hand in a middleware object, as people do in production."""

from starlette.middleware.gzip import GZipMiddleware

from tests.apps.fw_starlette import app as starlette_app

app = GZipMiddleware(starlette_app, minimum_size=1)
