"""WSGI apps the serving benchmark runs under gunicorn next to the real API.

- ``bare``: a Flask endpoint that returns a constant (the ceiling of this stack);
- ``nolog()``: the real API with the prediction log switched off (the log's cost);
- ``batch1()``: the real API with torch micro-batching off (a maximum batch of 1).
"""

from __future__ import annotations

from flask import Flask, Response

bare = Flask("bare")


@bare.post("/predict")
def constant() -> Response:
    """A constant prediction: no auth, no parsing, no model."""
    return Response('{"predictions":[{"prediction":1}]}', mimetype="application/json")


def nolog() -> Flask:
    """The real API, serving exactly as usual but without recording predictions."""
    from api import create_app
    from api.serving.service import serving

    app = create_app()
    serving(app).log_predictions = False
    return app


def batch1() -> Flask:
    """The real API with a maximum torch batch of 1 (each request its own forward pass)."""
    from api import create_app
    from api.serving.service import serving

    app = create_app()
    serving(app).runtime.max_batch = 1
    return app
