"""Traffic policies: how a model's requests are shared between champion and challenger.

``single`` serves the champion; ``split`` shares requests by weight (sticky per caller key
when asked); ``shadow`` has the challenger score every request too, logged, never returned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlwb.aliases import (
    check_model_name,
    jsonable,
    mlflow_aliases,
    mlflow_client,
    recorded_aliases,
    utc,
    utcnow,
)
from mlwb.audit import audit
from mlwb.db import metadata
from mlwb.errors import Conflict, InputError
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.users import Principal

traffic_policies_t = sa.Table(
    "traffic_policies",
    metadata,
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("weights", sa.Text, nullable=False),  # JSON {"champion": 0.9, "challenger": 0.1}
    sa.Column("sticky", sa.Boolean, nullable=False),
    sa.Column("set_by", sa.String(255), nullable=False),
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
)

ARMS = ("champion", "challenger")
MIN_WEIGHT = 1e-6  # the smallest weight of a split's arm (weights go up to 1e6)


class TrafficMode(StrEnum):
    """How requests are shared between champion and challenger."""

    SINGLE = "single"  # champion only
    SPLIT = "split"  # weighted between champion and challenger
    SHADOW = "shadow"  # champion answers; challenger also scores, logged, never returned


def ensure_tables(engine: Engine) -> None:
    """Create this module's table if missing (idempotent)."""
    metadata.create_all(engine, tables=[traffic_policies_t], checkfirst=True)


@dataclass(frozen=True)
class TrafficPolicy:
    """A model's traffic policy as set (the default is single, champion only)."""

    model: str
    mode: str = TrafficMode.SINGLE.value
    weights: dict[str, float] = field(default_factory=lambda: {"champion": 1.0})
    sticky: bool = False
    set_by: str | None = None
    set_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return jsonable(self)


def get_policy(engine: Engine, model: str) -> TrafficPolicy:
    """The traffic policy of ``model`` (single/champion when none was set)."""
    ensure_tables(engine)
    with engine.connect() as conn:
        return policy_in(conn, model)


def policy_in(conn: Connection, model: str) -> TrafficPolicy:
    """The traffic policy of ``model``, read on an open connection."""
    r = conn.execute(sa.select(traffic_policies_t).where(
        traffic_policies_t.c.model == model)).first()
    if r is None:
        return TrafficPolicy(model)
    return TrafficPolicy(model, r.mode, json.loads(r.weights), bool(r.sticky), r.set_by,
                         utc(r.set_at))


def set_traffic(services: Services, principal: Principal, model: str, mode: str,
                weights: dict[str, float] | None = None, sticky: bool = False,
                ip: str | None = None) -> TrafficPolicy:
    """Set ``model``'s traffic policy (approver+); split weights are normalised to sum 1."""
    principal.require(Role.approver, Scope.promote, "setting a traffic policy")
    check_model_name(model)
    try:
        tmode = TrafficMode(mode)
    except ValueError:
        raise InputError(f"unknown traffic mode {mode!r}; choose single, split or shadow",
                         mode=str(mode)[:40]) from None
    if not isinstance(sticky, bool):
        raise InputError("sticky must be true or false")
    norm = _weights(tmode, weights)
    mlflow_aliases(mlflow_client(services.settings), model)  # NotFound for an unknown model
    if tmode != TrafficMode.SINGLE and "challenger" not in recorded_aliases(services.engine,
                                                                           model):
        raise Conflict(f"{model!r} has no challenger yet; promote one first "
                            f"(`wb models promote {model} VERSION --alias challenger`)",
                            model=model)
    before = get_policy(services.engine, model)
    now = utcnow()
    with services.engine.begin() as conn:
        conn.execute(sa.delete(traffic_policies_t).where(traffic_policies_t.c.model == model))
        conn.execute(sa.insert(traffic_policies_t).values(
            model=model, mode=tmode.value, weights=json.dumps(norm), sticky=sticky,
            set_by=principal.actor, set_at=now))
    policy = TrafficPolicy(model, tmode.value, norm, sticky, principal.actor, now)
    audit(services.sink, principal.actor, "traffic.set", f"model:{model}",
          before=before.to_dict(), after=policy.to_dict(), ip=ip)
    return policy


def _weights(mode: TrafficMode, weights: dict[str, float] | None) -> dict[str, float]:
    if mode != TrafficMode.SPLIT:
        if weights is not None and not isinstance(weights, dict):
            raise InputError("weights must be an object such as {\"champion\": 1}")
        if weights and (set(weights) != {"champion"} or isinstance(weights["champion"], bool)
                        or not isinstance(weights["champion"], int | float)):
            raise InputError(f"weights apply to split mode only; {mode.value} serves the "
                             "champion's answer to every request")
        return {"champion": 1.0}
    if not isinstance(weights, dict) or not weights:
        raise InputError('split mode needs weights, e.g. {"champion": 0.9, "challenger": 0.1}')
    unknown = set(weights) - set(ARMS)
    if unknown:
        raise InputError(f"unknown arm(s) {', '.join(sorted(map(str, unknown)))} in weights; "
                         "use champion and challenger")
    out: dict[str, float] = {}
    for arm in ARMS:
        w = weights.get(arm, 0.0)
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w <= 1e6 or w != w:
            raise InputError(f"weight of {arm} must be a number >= 0, got {w!r}", arm=arm)
        out[arm] = float(w)
    # At least MIN_WEIGHT, not merely above 0: 1e-320 against 1e6 is above 0, but its share
    # rounds to 0 once normalised, and that arm would silently get nothing.
    if min(out.values()) < MIN_WEIGHT:
        raise InputError(f"split mode needs both weights of at least {MIN_WEIGHT:g}; for one "
                         "arm only use mode single")
    total = sum(out.values())
    return {arm: w / total for arm, w in out.items()}


