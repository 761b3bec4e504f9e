"""A WSGI app turned into ASGI 3 by asgiref: dualcorn must serve it as ASGI, not WSGI."""

from asgiref.wsgi import WsgiToAsgi
from flask import Flask

flask_app = Flask(__name__)


@flask_app.get("/")
def hello() -> str:
    return "hello from asgiref wsgitoasgi"


app = WsgiToAsgi(flask_app)
