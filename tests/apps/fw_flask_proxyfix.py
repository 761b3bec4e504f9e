from werkzeug.middleware.proxy_fix import ProxyFix

from tests.apps.fw_flask import flask_app

app = ProxyFix(flask_app, x_for=1, x_proto=1)
