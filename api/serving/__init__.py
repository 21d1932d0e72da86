"""The serving API: models embedded in the API processes behind small endpoints.

``bp`` gathers the serving blueprints (one module each): ``predict`` (simple predictions and
the prediction lookup), ``feedback``, ``invocations`` (MLflow scoring protocol), ``v2`` (Open
Inference Protocol) and ``metrics`` (Prometheus). The shared path every face calls is in
``service``; versions are chosen and cached in ``runtime``, loaded and verified in ``model``,
bodies checked in ``schema``.
"""

from __future__ import annotations

import importlib

from flask import Blueprint

bp = Blueprint("serving", __name__)
for _name in ("predict", "feedback", "invocations", "v2", "metrics"):
    try:
        bp.register_blueprint(importlib.import_module(f"api.serving.{_name}").bp)
    except ModuleNotFoundError as _exc:  # pragma: no cover - while a face is being written
        if _exc.name != f"api.serving.{_name}":
            raise
