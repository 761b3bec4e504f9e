from flask import Flask

flask_app = Flask(__name__)


@flask_app.get("/")
def hello() -> str:
    return "hello from flask"


app = flask_app
