"""Flask's own ceiling: the smallest JSON app, served exactly like the shop."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/hello")
def hello():
    return jsonify(message="hello, world")
