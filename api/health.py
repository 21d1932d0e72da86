"""Liveness and readiness, without auth."""

from __future__ import annotations

import redis
import sqlalchemy as sa
from flask import Blueprint, Response, jsonify

from api.auth import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when Redis and the state DB answer; the event backlog is reported (stream entries
    not landed yet: an API process's shipment of predictions is one)."""
    svc = services()
    checks: dict[str, object] = {}
    ok = True
    try:
        svc.redis.ping()
        checks["redis"] = "ok"
        checks["event_backlog"] = svc.sink.backlog()
    except redis.RedisError as exc:
        ok, checks["redis"] = False, f"unavailable: {exc}"
    try:
        with svc.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["state_db"] = "ok"
    except sa.exc.SQLAlchemyError as exc:
        ok, checks["state_db"] = False, f"unavailable: {exc.__class__.__name__}"
    checks["lake_version"] = svc.lake.manifest().version
    return jsonify({"status": "ok" if ok else "degraded", "checks": checks}), 200 if ok else 503
