"""Aliases moved in MLflow directly: detected, recorded, audited, and not served until confirmed.

:func:`check_alias_drift` compares MLflow's aliases of a model with the product's record.
Each difference is stored once (status ``open``) and audited as ``alias.drift_detected``;
while it is open, :func:`mlwb.promotions.serving_plan` keeps serving the recorded version and
lists the MLflow one under ``blocked``. An approver then either confirms it (the record
follows MLflow) or reverts it (MLflow follows the record). A difference that disappears by
itself (someone put MLflow back) is closed as ``gone``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import Engine

from mlwb.aliases import (
    alias_lock,
    alias_moves,
    current_holders,
    jsonable,
    mlflow_aliases,
    mlflow_client,
    record_move,
    set_mlflow_alias,
    utc,
    utcnow,
)
from mlwb.aliases import ensure_tables as ensure_alias_tables
from mlwb.audit import audit
from mlwb.db import metadata
from mlwb.errors import Conflict, InputError, NotFound, StoreError
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.users import Principal

alias_drift_t = sa.Table(
    "mlflow_alias_drift",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(255), nullable=False, index=True),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("mlflow_version", sa.String(32), nullable=True),  # None: deleted in MLflow
    sa.Column("recorded_version", sa.String(32), nullable=True),
    sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | confirmed | reverted | gone
    sa.Column("resolved_by", sa.String(255), nullable=True),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
)


def ensure_tables(engine: Engine) -> None:
    """Create this module's table if missing (idempotent)."""
    ensure_alias_tables(engine)
    metadata.create_all(engine, tables=[alias_drift_t], checkfirst=True)


@dataclass(frozen=True)
class Drift:
    """One difference between MLflow's alias and the product's record."""

    id: int
    model: str
    alias: str
    mlflow_version: str | None
    recorded_version: str | None
    detected_at: datetime
    status: str
    resolved_by: str | None
    resolved_at: datetime | None

    @classmethod
    def from_row(cls, r: Any) -> Drift:
        """Build from a mlflow_alias_drift row."""
        return cls(r.id, r.model, r.alias, r.mlflow_version, r.recorded_version,
                   utc(r.detected_at), r.status, r.resolved_by, utc(r.resolved_at))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return jsonable(self)


def list_drift(engine: Engine, model: str | None = None, status: str | None = "open",
               ) -> list[Drift]:
    """Recorded differences, newest first (open ones by default; ``status=None`` for all)."""
    ensure_tables(engine)
    q = sa.select(alias_drift_t)
    if model:
        q = q.where(alias_drift_t.c.model == model)
    if status:
        q = q.where(alias_drift_t.c.status == status)
    with engine.connect() as conn:
        return [Drift.from_row(r) for r in conn.execute(q.order_by(alias_drift_t.c.id.desc()))]


def check_all(services: Services) -> list[Drift]:
    """:func:`check_alias_drift` for every registered model, from one MLflow listing."""
    client = mlflow_client(services.settings)
    try:
        registered = client.search_registered_models(max_results=1000)
    except MlflowException as exc:
        raise StoreError(f"MLflow could not be read: {exc.message}") from None
    found: list[Drift] = []
    for rm in registered:
        live = {a: str(v) for a, v in rm.aliases.items()}
        found.extend(check_alias_drift(services, rm.name, live=live))
    return found


def check_alias_drift(services: Services, model: str,
                      live: dict[str, str] | None = None) -> list[Drift]:
    """Compare MLflow's aliases of ``model`` with the record; record and audit new differences.

    ``live`` is MLflow's alias -> version when the caller already read it. Returns the
    differences open after the check.
    """
    if live is None:
        live = mlflow_aliases(mlflow_client(services.settings), model)
    ensure_tables(services.engine)
    found: list[Drift] = []
    gone: list[tuple[Any, str]] = []  # (finding, why it closed)
    with services.engine.begin() as conn:
        recorded = {a: v for a, v in current_holders(alias_moves(conn, model)).items()
                    if v is not None}
        open_rows = {r.alias: r for r in conn.execute(sa.select(alias_drift_t).where(
            alias_drift_t.c.model == model, alias_drift_t.c.status == "open"))}
        for alias in sorted(set(live) | set(recorded) | set(open_rows)):
            in_mlflow, ours = live.get(alias), recorded.get(alias)
            row = open_rows.get(alias)
            if in_mlflow == ours:
                if row is not None:  # MLflow was put back by hand: nothing left to decide
                    conn.execute(sa.update(alias_drift_t).where(alias_drift_t.c.id == row.id)
                                 .values(status="gone", resolved_by="system",
                                         resolved_at=utcnow()))
                    gone.append((row, "MLflow agrees with the record again"))
                continue
            if row is not None and row.mlflow_version == in_mlflow and \
                    row.recorded_version == ours:
                continue  # already known
            if row is not None:  # moved again: the older finding is superseded
                conn.execute(sa.update(alias_drift_t).where(alias_drift_t.c.id == row.id)
                             .values(status="gone", resolved_by="system",
                                     resolved_at=utcnow()))
                gone.append((row, f"MLflow moved it again, to {in_mlflow}"))
            new_id = conn.execute(sa.insert(alias_drift_t).values(
                model=model, alias=alias, mlflow_version=in_mlflow, recorded_version=ours,
                detected_at=utcnow(), status="open").returning(alias_drift_t.c.id)).scalar_one()
            found.append(Drift(new_id, model, alias, in_mlflow, ours, utcnow(), "open",
                               None, None))
    for row, why in gone:  # every finding's end is in the audit log, not only decisions
        audit(services.sink, "system", "alias.drift_gone", f"model:{model}@{row.alias}",
              before={"mlflow_version": row.mlflow_version, "drift_id": row.id},
              after={"reason": why})
    for d in found:
        audit(services.sink, "system", "alias.drift_detected", f"model:{model}@{d.alias}",
              before={"version": d.recorded_version},
              after={"mlflow_version": d.mlflow_version, "drift_id": d.id,
                     "note": "moved in MLflow directly; not served until an approver "
                             "confirms it"})
    return list_drift(services.engine, model)


def resolve_drift(services: Services, principal: Principal, drift_id: int,
                  action: str = "confirm", ip: str | None = None,
                  model: str | None = None) -> Drift:
    """Confirm (the record follows MLflow) or revert (MLflow follows the record); approver+."""
    if action not in ("confirm", "revert"):
        raise InputError(f"action must be confirm or revert, got {action!r}")
    principal.require(Role.approver, Scope.promote, f"{action}ing an alias moved in MLflow")
    ensure_tables(services.engine)
    client = mlflow_client(services.settings)
    found = None
    with services.engine.connect() as conn:
        if 0 < int(drift_id) < 2**63:  # ids from URLs can be beyond the DB's integers
            found = conn.execute(sa.select(alias_drift_t).where(
                alias_drift_t.c.id == drift_id)).first()
    if found is None:
        raise NotFound(f"no alias drift {drift_id}; see `wb models drift MODEL`",
                       drift_id=drift_id)
    if model is not None and found.model != model:
        raise NotFound(f"alias drift {drift_id} is about {found.model!r}, not {model!r}; see "
                       f"`wb models drift {model}`", drift_id=drift_id)
    with alias_lock(services.redis, found.model, found.alias), services.engine.begin() as conn:
        r = conn.execute(sa.select(alias_drift_t).where(alias_drift_t.c.id == drift_id)).one()
        if r.status != "open":
            raise Conflict(f"alias drift {drift_id} is already {r.status}", drift_id=drift_id)
        live = mlflow_aliases(client, r.model).get(r.alias)
        if live != r.mlflow_version:
            raise Conflict(f"MLflow's {r.alias!r} of {r.model!r} moved again since drift "
                           f"{drift_id} was found; run `wb models drift {r.model}` again",
                           drift_id=drift_id)
        status = "confirmed" if action == "confirm" else "reverted"
        conn.execute(sa.update(alias_drift_t).where(alias_drift_t.c.id == r.id).values(
            status=status, resolved_by=principal.actor, resolved_at=utcnow()))
        if action == "confirm":
            record_move(conn, r.model, r.alias, r.mlflow_version, principal.actor,
                        "drift_confirmed")
        else:
            set_mlflow_alias(client, r.model, r.alias, r.recorded_version)
    audit(services.sink, principal.actor, f"alias.drift_{status}", f"model:{r.model}@{r.alias}",
          before={"version": r.recorded_version},
          after={"version": r.mlflow_version if action == "confirm" else r.recorded_version,
                 "drift_id": r.id}, ip=ip)
    return _get(services.engine, r.id)


def _get(engine: Engine, drift_id: int) -> Drift:
    with engine.connect() as conn:
        r = conn.execute(sa.select(alias_drift_t).where(alias_drift_t.c.id == drift_id)).one()
    return Drift.from_row(r)


def open_counts(engine: Engine) -> dict[str, int]:
    """Model -> number of open differences (for a metrics gauge or a workbench badge)."""
    ensure_tables(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(alias_drift_t.c.model, sa.func.count()).where(
            alias_drift_t.c.status == "open").group_by(alias_drift_t.c.model)).all()
    return {model: int(n) for model, n in rows}
