"""Recording events over HTTP: any number of workers, one ingest, no lock errors."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from api.auth import requires, services
from mlwb import defaults
from mlwb.errors import InputError
from mlwb.events import EventSink
from mlwb.roles import Role, Scope

bp = Blueprint("events", __name__)


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400/415 that says what to send."""
    if not request.is_json:
        raise InputError("send the body as JSON with `Content-Type: application/json`",
                         content_type=request.content_type)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    return body


@bp.post("/api/events")
@requires(Role.scientist, Scope.events, "recording events")
def record_events() -> tuple[Response, int]:
    """Record up to 1000 events; 202 means every one is acknowledged and will land once."""
    body = json_body()
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise InputError('send {"events": [{"kind": "...", "payload": {...}}, ...]}')
    if len(events) > defaults.MAX_EVENTS_PER_REQUEST:
        raise InputError(f"at most {defaults.MAX_EVENTS_PER_REQUEST} events per request; "
                         f"got {len(events)}, split them")
    source = body.get("source")
    if source is not None and not isinstance(source, str):
        raise InputError("source must be a string")
    items = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            raise InputError(f"events[{i}] must be an object", index=i)
        unknown = set(ev) - {"id", "ts", "kind", "payload"}
        if unknown:
            raise InputError(f"events[{i}] has unknown field(s) {', '.join(sorted(unknown))}; "
                             "allowed: id, ts, kind, payload", index=i)
        if ev.get("id") is not None and (not isinstance(ev["id"], str) or not
                                         0 < len(ev["id"]) <= 64):
            raise InputError(f"events[{i}].id must be a string of 1-64 characters", index=i)
        try:
            row = EventSink.prepare("events", {**ev, "source": source,
                                               "actor": g.principal.actor})
        except InputError as exc:
            raise InputError(f"events[{i}]: {exc.message}", index=i) from None
        items.append(("events", row))
    ids = services().sink.send(items)
    return jsonify({"accepted": len(ids), "ids": ids}), 202


@bp.get("/api/events")
@requires(Role.viewer, Scope.read, "reading events")
def list_events() -> Response:
    """The newest landed events (optionally of one kind), at most a few seconds old."""
    try:
        limit = min(int(request.args.get("limit", 100)), 10_000)
    except ValueError:
        raise InputError("limit must be an integer") from None
    if limit < 0:
        raise InputError("limit must be 0 or more")
    kind = request.args.get("kind")
    sql = "SELECT id, ts, kind, source, actor, payload FROM events"
    params: list[Any] = []
    if kind:
        sql += " WHERE kind = ?"
        params.append(kind)
    sql += f" ORDER BY ts DESC LIMIT {limit}"
    df = services().lake.df(sql, params)
    df["ts"] = df["ts"].astype(str)
    return jsonify({"events": df.to_dict("records"), "count": len(df)})
