"""Promotions, rollback, traffic policies and alias drift over HTTP (the same service functions
the CLI and the workbench call)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from api.auth import client_ip, requires, services
from api.events import json_body
from mlwb import promotions as pr
from mlwb.alias_drift import check_alias_drift, list_drift, resolve_drift
from mlwb.errors import InputError
from mlwb.roles import Role, Scope
from mlwb.traffic import get_policy, set_traffic

bp = Blueprint("promotions", __name__)


def optional_body() -> dict[str, Any]:
    """The JSON object sent, or {} when the body is empty."""
    if not request.get_data(cache=True):
        return {}
    return json_body()


def only(body: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    """``body`` if it has no other fields; else a 400 naming them."""
    unknown = set(body) - allowed
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}; allowed: "
                         f"{', '.join(sorted(allowed))}")
    return body


def text(body: dict[str, Any], key: str, default: str = "") -> str:
    """A string field of ``body`` (or the default)."""
    value = body.get(key, default)
    if not isinstance(value, str):
        raise InputError(f"{key} must be a string", field=key)
    return value


@bp.get("/api/models")
@requires(Role.viewer, Scope.read, "listing models")
def models() -> Response:
    """Registered models with their aliases (MLflow's and the product's) and traffic mode."""
    return jsonify({"models": pr.list_models(services())})


@bp.get("/api/models/<name>/history")
@requires(Role.viewer, Scope.read, "reading a model's promotion history")
def model_history(name: str) -> Response:
    """Alias moves (newest first), proposals, traffic policy and the serving plan."""
    out = pr.history(services(), name).to_dict()
    out["plan"] = pr.serving_plan(services().engine, name).to_dict()
    return jsonify(out)


@bp.post("/api/models/<name>/promotions")
@requires(Role.scientist, Scope.promote, "proposing a promotion")
def propose(name: str) -> tuple[Response, int]:
    """Propose a version for an alias (champion by default); an approver approves it."""
    body = only(json_body(), {"version", "alias", "note"})
    if "version" not in body:
        raise InputError('send {"version": N, "alias": "champion", "note": "..."}')
    promo = pr.propose(services(), g.principal, name, body["version"],
                       alias=text(body, "alias", "champion"), note=text(body, "note"),
                       ip=client_ip())
    return jsonify(promo.to_dict()), 201


@bp.get("/api/promotions")
@requires(Role.viewer, Scope.read, "listing promotions")
def promotions() -> Response:
    """Proposals, newest first; filter with ?model=NAME and ?status=proposed."""
    status = request.args.get("status")
    if status is not None and status not in {s.value for s in pr.PromotionStatus}:
        raise InputError("status is one of proposed, approved, rejected, superseded")
    items = pr.list_promotions(services().engine, request.args.get("model"), status)
    return jsonify({"promotions": [p.to_dict() for p in items]})


@bp.post("/api/promotions/<int:promotion_id>/approve")
@requires(Role.approver, Scope.promote, "approving a promotion")
def approve(promotion_id: int) -> Response:
    """Approve a proposal someone else made: the alias moves (four eyes)."""
    only(optional_body(), set())
    return jsonify(pr.approve(services(), g.principal, promotion_id, ip=client_ip()).to_dict())


@bp.post("/api/promotions/<int:promotion_id>/reject")
@requires(Role.scientist, Scope.promote, "rejecting a promotion")
def reject(promotion_id: int) -> Response:
    """Reject a proposal (approver), or withdraw your own."""
    body = only(optional_body(), {"note"})
    return jsonify(pr.reject(services(), g.principal, promotion_id, text(body, "note"),
                             ip=client_ip()).to_dict())


@bp.post("/api/models/<name>/aliases/<alias>/rollback")
@requires(Role.approver, Scope.promote, "rolling back an alias")
def rollback(name: str, alias: str) -> Response:
    """Move the alias back to its previous holder (``from_version``: only if it still holds
    the version the caller saw, else a 409)."""
    body = only(optional_body(), {"reason", "from_version"})
    move = pr.rollback(services(), g.principal, name, alias, reason=text(body, "reason"),
                       ip=client_ip(), from_version=body.get("from_version"))
    return jsonify(move.to_dict())


@bp.get("/api/models/<name>/traffic")
@requires(Role.viewer, Scope.read, "reading a traffic policy")
def traffic(name: str) -> Response:
    """The traffic policy as set, and the plan serving follows now."""
    pr.check_model_name(name)
    return jsonify({**get_policy(services().engine, name).to_dict(),
                    "plan": pr.serving_plan(services().engine, name).to_dict()})


@bp.put("/api/models/<name>/traffic")
@requires(Role.approver, Scope.promote, "setting a traffic policy")
def put_traffic(name: str) -> Response:
    """Set single, split (with weights) or shadow, sticky per caller key or not."""
    body = only(json_body(), {"mode", "weights", "sticky"})
    if "mode" not in body:
        raise InputError('send {"mode": "split", "weights": {"champion": 0.9, '
                         '"challenger": 0.1}, "sticky": true}')
    policy = set_traffic(services(), g.principal, name, text(body, "mode"),
                         body.get("weights"), body.get("sticky", False), ip=client_ip())
    return jsonify({**policy.to_dict(),
                    "plan": pr.serving_plan(services().engine, name).to_dict()})


@bp.get("/api/models/<name>/drift")
@requires(Role.viewer, Scope.read, "checking aliases moved in MLflow")
def drift(name: str) -> Response:
    """Compare MLflow's aliases with the record now; list the open differences."""
    pr.check_model_name(name)
    found = check_alias_drift(services(), name)
    history = list_drift(services().engine, name, status=None)
    return jsonify({"open": [d.to_dict() for d in found],
                    "history": [d.to_dict() for d in history[:50]]})


@bp.post("/api/drift/<int:drift_id>/<any(confirm, revert):action>")
@requires(Role.approver, Scope.promote, "deciding an alias moved in MLflow")
def decide_drift(drift_id: int, action: str) -> Response:
    """Confirm (serve MLflow's version) or revert (put MLflow back) a detected move."""
    only(optional_body(), set())
    return jsonify(resolve_drift(services(), g.principal, drift_id, action,
                                 ip=client_ip()).to_dict())
