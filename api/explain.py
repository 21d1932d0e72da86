"""Explain predictions over HTTP: per-feature attributions that sum to the model's output."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from api.auth import requires, services
from api.events import json_body
from api.promotions import only
from mlwb.explain import explain as explain_rows
from mlwb.roles import Role, Scope

bp = Blueprint("explain", __name__)


@bp.post("/api/models/<name>/explain")
@requires(Role.viewer, Scope.predict, "explaining predictions")
def explain(name: str) -> Response:
    """Shapley attributions for up to 20 rows, against the version's reference sample."""
    body = only(json_body(), {"instances", "version", "alias"})
    return jsonify(explain_rows(services(), g.principal, name, body.get("instances"),
                                version=body.get("version"), alias=body.get("alias")))
