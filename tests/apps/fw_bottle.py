import bottle

app = bottle.Bottle()


@app.get("/")
def hello() -> str:
    return "hello from bottle"
