"""Flask's bound ``wsgi_app`` method, the hook people wrap with WSGI middleware."""

from tests.apps.fw_flask import flask_app

app = flask_app.wsgi_app
