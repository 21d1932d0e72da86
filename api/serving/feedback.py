"""``POST /api/feedback``: the true label of a prediction, once per prediction.

The prediction id's signature is checked without a lookup (so feedback for a prediction
whose log row has not landed yet still links), and "once" is enforced by one Lua script that
claims the id in Redis *and* appends the feedback event, atomically: a worker killed in
between cannot leave a claimed id without its event, nor an event twice.
"""

from __future__ import annotations

import json
import math
from typing import Any

import redis
from flask import Blueprint, Response, g, jsonify

from api.auth import requires, services
from api.serving.service import caller_key, json_object, serving
from mlwb.errors import Conflict, InputError, NotFound, StoreError
from mlwb.events import EventSink
from mlwb.roles import Role, Scope

bp = Blueprint("serving_feedback", __name__)

# How long a prediction id stays claimed; labels more than a year late are not expected.
CLAIM_TTL_SECONDS = 400 * 86400

# Also counts the caller's hit in the same per-token window as predictions (KEYS[3]).
_CLAIM_AND_APPEND = """
local n = redis.call('INCR', KEYS[3])
if n == 1 then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
if n > tonumber(ARGV[4]) then return -1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('XADD', KEYS[2], '*', 't', 'feedback', 'd', ARGV[3])
  return 1
end
return 0
"""


def _label(body: dict[str, Any]) -> Any:
    keys = [k for k in ("label", "value") if k in body]
    if len(keys) != 1:
        raise InputError('send the true class as "label" (or the true number as "value")')
    label = body[keys[0]]
    if isinstance(label, float) and not math.isfinite(label):
        raise InputError(f"{keys[0]} must be a finite number")
    if label is None or not isinstance(label, str | int | float | bool):
        raise InputError(f"{keys[0]} must be a string, number or boolean")
    return label


@bp.post("/api/feedback")
@requires(Role.viewer, Scope.feedback, "sending feedback")
def feedback() -> tuple[Response, int]:
    """Record the true label of one prediction; 409 if it already has one."""
    body = json_object()
    unknown = set(body) - {"prediction_id", "label", "value"}
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}; send "
                         '{"prediction_id": "...", "label": ...}')
    pid = body.get("prediction_id")
    if not isinstance(pid, str) or not serving().ids.verify(pid):
        raise NotFound(f"{pid!r} is not a prediction id issued by this server; use the "
                       "prediction_id a predict response returned", prediction_id=pid)
    label = _label(body)
    svc = services()
    # Row ids are unique across tables (the ingest drops repeats): suffix the prediction id.
    row = EventSink.prepare("feedback", {"id": f"{pid}:feedback", "prediction_id": pid,
                                         "label": label, "caller": g.principal.actor})
    data = json.dumps(row, separators=(",", ":"), default=str)  # EventSink.send's wire form
    state = serving()
    caller = caller_key(g.principal)
    state.check_rate(caller)
    limiter = state.limiter
    try:
        claimed = svc.redis.eval(_CLAIM_AND_APPEND, 3, f"wb:feedback:{pid}", svc.sink.stream,
                                 limiter.key(caller), row["ts"], CLAIM_TTL_SECONDS, data,
                                 limiter.limit, limiter.window + 1)
    except redis.RedisError as exc:
        raise StoreError(f"feedback could not be recorded ({exc}); nothing was stored, "
                         "retry") from exc
    if claimed == -1:
        raise limiter.refusal("requests for this token")
    if not claimed:
        raise Conflict(f"prediction {pid} already has feedback; each prediction takes one "
                       "label", prediction_id=pid)
    return jsonify({"prediction_id": pid, "recorded": True}), 201
