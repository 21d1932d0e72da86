"""Promotions under four eyes, rollback, and the serving plan the serving path follows.

    propose (scientist+) ──> approve (approver+, not the proposer) ──> alias moves
                        └──> reject                                    ├── MLflow alias set
    rollback (approver+) ──> the alias goes back to its previous holder └── alias_history row

The product's record (:mod:`mlwb.aliases`) is authoritative. :func:`serving_plan` reads
only the state DB (a few indexed queries, no MLflow call): the serving path calls it every
couple of seconds. Moves made in MLflow directly are found by :mod:`mlwb.alias_drift`; the
versions they point at stay blocked until an approver confirms them.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import Connection, Engine

from mlwb import alias_drift, traffic
from mlwb.alias_drift import alias_drift_t
from mlwb.aliases import (
    AliasMove,
    alias_lock,
    alias_moves,
    check_alias,
    check_model_name,
    check_version,
    current_holders,
    jsonable,
    mlflow_aliases,
    mlflow_client,
    record_move,
    recorded_aliases,
    require_version,
    set_mlflow_alias,
    utc,
    utcnow,
)
from mlwb.audit import audit
from mlwb.db import metadata
from mlwb.errors import Conflict, InputError, NotFound, PermissionDenied, StoreError
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.traffic import TrafficMode, TrafficPolicy, policy_in
from mlwb.users import Principal

promotions_t = sa.Table(
    "promotions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(255), nullable=False, index=True),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("proposed_by", sa.String(255), nullable=False),
    # Who proposed, as a person ("<user id>:<name>"): a token and a session of the same
    # person are the same pair of eyes.
    sa.Column("proposer", sa.String(255), nullable=False),
    sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("approved_by", sa.String(255), nullable=True),  # or rejected by
    sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("note", sa.Text, nullable=False, default=""),
)


class PromotionStatus(StrEnum):
    """Where a proposal stands."""

    proposed = "proposed"
    approved = "approved"
    rejected = "rejected"
    superseded = "superseded"


_ensured: weakref.WeakSet[Engine] = weakref.WeakSet()


def ensure_tables(engine: Engine) -> None:
    """Create the promotion, alias, traffic and drift tables if missing (once per engine)."""
    if engine in _ensured:  # serving_plan runs every few seconds: skip the catalogue reads
        return
    traffic.ensure_tables(engine)
    alias_drift.ensure_tables(engine)
    metadata.create_all(engine, tables=[promotions_t], checkfirst=True)
    _ensured.add(engine)


@dataclass(frozen=True)
class Promotion:
    """A proposal to point ``alias`` of ``model`` at ``version``."""

    id: int
    model: str
    alias: str
    version: str
    proposed_by: str
    proposed_at: datetime
    status: str
    approved_by: str | None
    approved_at: datetime | None
    note: str

    @classmethod
    def from_row(cls, r: Any) -> Promotion:
        """Build from a promotions-table row."""
        return cls(r.id, r.model, r.alias, r.version, r.proposed_by, utc(r.proposed_at),
                   r.status, r.approved_by, utc(r.approved_at), r.note or "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return jsonable(self)


@dataclass(frozen=True)
class ServingPlan:
    """What the serving path serves for one model; built from the product's record only."""

    champion: str | None
    challenger: str | None
    mode: str
    weights: dict[str, float]
    sticky: bool
    blocked: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def serving_plan(engine: Engine, name: str) -> ServingPlan:
    """What to serve for ``name``, from the product's record alone (cheap: no MLflow call).

    A split or shadow policy without a challenger in the record serves the champion alone.
    ``blocked`` lists versions an alias was moved to in MLflow directly, pending confirmation.
    """
    ensure_tables(engine)
    with engine.connect() as conn:
        current = current_holders(alias_moves(conn, name))
        policy = policy_in(conn, name)
        blocked = conn.execute(sa.select(alias_drift_t.c.mlflow_version).where(
            alias_drift_t.c.model == name, alias_drift_t.c.status == "open")).scalars().all()
    champion, challenger = current.get("champion"), current.get("challenger")
    mode, weights = policy.mode, dict(policy.weights)
    if challenger is None or mode == TrafficMode.SINGLE:
        mode, weights = TrafficMode.SINGLE.value, {"champion": 1.0}
    serving = {champion, challenger}
    return ServingPlan(champion, challenger, mode, weights, policy.sticky,
                       sorted({v for v in blocked if v is not None and v not in serving}))


def list_promotions(engine: Engine, model: str | None = None,
                    status: str | None = None) -> list[Promotion]:
    """Proposals, newest first, optionally of one model and/or status."""
    ensure_tables(engine)
    q = sa.select(promotions_t)
    if model:
        q = q.where(promotions_t.c.model == model)
    if status:
        q = q.where(promotions_t.c.status == status)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(promotions_t.c.id.desc())).all()
    return [Promotion.from_row(r) for r in rows]


def check_id(value: int, what: str) -> int:
    """A row id in the DB's integer range, else NotFound (huge ids come from URLs)."""
    if not 0 < int(value) < 2**63:
        raise NotFound(f"no {what} {value}", **{what.replace(' ', '_') + '_id': str(value)[:40]})
    return int(value)


def get_promotion(engine: Engine, promotion_id: int) -> Promotion:
    """One proposal, or NotFound."""
    ensure_tables(engine)
    promotion_id = check_id(promotion_id, "promotion")
    with engine.connect() as conn:
        r = conn.execute(sa.select(promotions_t).where(promotions_t.c.id == promotion_id)).first()
    if r is None:
        raise NotFound(f"no promotion {promotion_id}; see `wb models history MODEL`",
                       promotion_id=promotion_id)
    return Promotion.from_row(r)


@dataclass(frozen=True)
class ModelHistory:
    """Everything the product recorded about a model's aliases and traffic."""

    model: str
    aliases: dict[str, str]
    moves: list[AliasMove]
    promotions: list[Promotion]
    traffic: TrafficPolicy

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"model": self.model, "aliases": self.aliases,
                "moves": [m.to_dict() for m in self.moves],
                "promotions": [p.to_dict() for p in self.promotions],
                "traffic": self.traffic.to_dict()}


def history(services: Services, model: str) -> ModelHistory:
    """The alias moves (newest first), proposals and traffic policy of ``model``."""
    check_model_name(model)
    engine = services.engine
    ensure_tables(engine)
    with engine.connect() as conn:
        moves = alias_moves(conn, model)
        policy = policy_in(conn, model)
    current = {a: v for a, v in current_holders(moves).items() if v is not None}
    promos = list_promotions(engine, model)
    if not moves and not promos:  # nothing recorded: a 404 if MLflow has no such model
        mlflow_aliases(mlflow_client(services.settings), model)
    return ModelHistory(model, current, moves[::-1], promos, policy)


# --- changing it (each step audited) -----------------------------------------------------------

def person(principal: Principal) -> str:
    """A principal as a person: a token and a session of one user are the same eyes."""
    return f"{principal.user_id}:{principal.username}"


def propose(services: Services, principal: Principal, model: str, version: str | int,
            alias: str = "champion", note: str = "", ip: str | None = None) -> Promotion:
    """Propose ``version`` of ``model`` for ``alias`` (scientist+); supersedes older proposals."""
    principal.require(Role.scientist, Scope.promote, "proposing a promotion")
    check_model_name(model)
    check_alias(alias)
    version = check_version(version)
    if not isinstance(note, str) or len(note) > 2000:
        raise InputError("note must be text of at most 2000 characters")
    require_version(mlflow_client(services.settings), model, version)
    ensure_tables(services.engine)
    with services.engine.begin() as conn:
        if current_holders(alias_moves(conn, model, alias)).get(alias) == version:
            raise Conflict(f"{model} version {version} already holds {alias!r}",
                           model=model, version=version, alias=alias)
        superseded = conn.execute(sa.update(promotions_t).where(
            promotions_t.c.model == model, promotions_t.c.alias == alias,
            promotions_t.c.status == PromotionStatus.proposed.value,
        ).values(status=PromotionStatus.superseded.value).returning(promotions_t.c.id)
        ).scalars().all()
        new_id = conn.execute(sa.insert(promotions_t).values(
            model=model, alias=alias, version=version, proposed_by=principal.actor,
            proposer=person(principal), proposed_at=utcnow(),
            status=PromotionStatus.proposed.value, note=note,
        ).returning(promotions_t.c.id)).scalar_one()
    promo = get_promotion(services.engine, new_id)
    audit(services.sink, principal.actor, "promotion.proposed", f"model:{model}@{alias}",
          after={**promo.to_dict(), "superseded": list(superseded)}, ip=ip)
    return promo


def _pending(conn: Connection, promotion_id: int) -> Any:
    r = conn.execute(sa.select(promotions_t).where(promotions_t.c.id == promotion_id)).first()
    if r is None:
        raise NotFound(f"no promotion {promotion_id}; see `wb models history MODEL`",
                       promotion_id=promotion_id)
    if r.status != PromotionStatus.proposed.value:
        raise Conflict(f"promotion {promotion_id} is already {r.status}; propose again "
                       "(`wb models promote`)", promotion_id=promotion_id, status=r.status)
    return r


def approve(services: Services, principal: Principal, promotion_id: int,
            ip: str | None = None) -> Promotion:
    """Approve someone else's proposal (approver+): MLflow's alias and our history move."""
    principal.require(Role.approver, Scope.promote, "approving a promotion")
    ensure_tables(services.engine)
    client = mlflow_client(services.settings)
    pid = check_id(promotion_id, "promotion")
    with services.engine.connect() as conn:
        first = _pending(conn, pid)
    with alias_lock(services.redis, first.model, first.alias), services.engine.begin() as conn:
        r = _pending(conn, pid)  # read again under the lock: it may have been decided
        if r.proposer == person(principal):
            raise PermissionDenied(
                f"promotion {promotion_id} was proposed by you ({r.proposed_by}); another "
                "approver must approve it (four eyes)", promotion_id=promotion_id)
        moves = alias_moves(conn, r.model, r.alias)
        if current_holders(moves).get(r.alias) == r.version:
            raise Conflict(f"{r.model} version {r.version} already holds {r.alias!r} (it "
                           "moved there after this proposal); nothing to approve",
                           promotion_id=promotion_id, model=r.model, alias=r.alias)
        m = moves[-1] if moves else None  # the newest move (moves are oldest first)
        if m is not None and m.moved_at > utc(r.proposed_at):
            # the change under review is no longer the one proposed
            held, now = (f"v{v}" if v is not None else "none"
                         for v in (m.previous_version, m.version))
            raise Conflict(
                f"{r.alias!r} of {r.model} moved after promotion {promotion_id} was proposed "
                f"({held} -> {now}, {m.reason} by {m.moved_by}); "
                f"approving it would make a change nobody proposed. Propose it again "
                f"(`wb models promote {r.model} {r.version} --alias {r.alias}`)",
                promotion_id=promotion_id, model=r.model, alias=r.alias)
        require_version(client, r.model, r.version)
        done = conn.execute(sa.update(promotions_t).where(
            promotions_t.c.id == r.id, promotions_t.c.status == PromotionStatus.proposed.value,
        ).values(status=PromotionStatus.approved.value, approved_by=principal.actor,
                 approved_at=utcnow())).rowcount
        if done != 1:  # another approver won the race
            raise Conflict(f"promotion {promotion_id} was decided meanwhile",
                           promotion_id=promotion_id)
        move = record_move(conn, r.model, r.alias, r.version, principal.actor, "promotion", r.id)
        # Last, so a refusal from MLflow rolls our record back with the transaction.
        set_mlflow_alias(client, r.model, r.alias, r.version)
    promo = get_promotion(services.engine, r.id)
    audit(services.sink, principal.actor, "promotion.approved", f"model:{r.model}@{r.alias}",
          before={"version": move.previous_version}, after=promo.to_dict(), ip=ip)
    return promo


def reject(services: Services, principal: Principal, promotion_id: int,
           note: str = "", ip: str | None = None) -> Promotion:
    """Reject a pending proposal (approver+, or the proposer withdrawing it)."""
    ensure_tables(services.engine)
    with services.engine.begin() as conn:
        r = _pending(conn, check_id(promotion_id, "promotion"))
        if r.proposer != person(principal):
            principal.require(Role.approver, Scope.promote, "rejecting a promotion")
        done = conn.execute(sa.update(promotions_t).where(
            promotions_t.c.id == r.id, promotions_t.c.status == PromotionStatus.proposed.value,
        ).values(status=PromotionStatus.rejected.value, approved_by=principal.actor,
                 approved_at=utcnow())).rowcount
        if done != 1:  # approved (or withdrawn) meanwhile: never overwrite that decision
            raise Conflict(f"promotion {promotion_id} was decided meanwhile",
                           promotion_id=promotion_id)
    promo = get_promotion(services.engine, r.id)
    audit(services.sink, principal.actor, "promotion.rejected", f"model:{r.model}@{r.alias}",
          after={**promo.to_dict(), "reason": note}, ip=ip)
    return promo


def _holders(moves: list[AliasMove]) -> list[str | None]:
    """The stack of holders: a promotion pushes, a rollback pops."""
    stack: list[str | None] = []
    for m in moves:
        if m.reason == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(m.version)
    return stack


def rollback(services: Services, principal: Principal, model: str, alias: str = "champion",
             reason: str = "", ip: str | None = None,
             from_version: str | int | None = None) -> AliasMove:
    """Move ``alias`` back to the holder before the current one (approver+).

    ``from_version`` is the holder the caller saw: when given and the alias has moved since
    (another rollback or promotion landed first), nothing moves and it is a 409, so two
    approvers pressing rollback at once roll back once, not twice. Without it, rollbacks
    of one alias take turns, each from the holder it finds."""
    principal.require(Role.approver, Scope.promote, "rolling back an alias")
    check_model_name(model)
    check_alias(alias)
    expected = None if from_version is None else check_version(from_version)
    ensure_tables(services.engine)
    client = mlflow_client(services.settings)
    with alias_lock(services.redis, model, alias), services.engine.begin() as conn:
        stack = _holders(alias_moves(conn, model, alias))
        if len(stack) < 2 or stack[-2] is None:
            holder = f"only {stack[-1]!s}" if stack else "no holder"
            raise Conflict(f"nothing to roll back to: {alias!r} of {model!r} has had {holder} "
                           "in the product's record", model=model, alias=alias)
        if expected is not None and stack[-1] != expected:
            raise Conflict(f"{alias!r} of {model!r} is held by v{stack[-1]}, not "
                           f"v{expected}: it moved meanwhile, so nothing was rolled back. "
                           f"See `wb models history {model}`; roll back again from "
                           f"v{stack[-1]} if you still mean to", model=model, alias=alias,
                           holder=stack[-1])
        target = stack[-2]
        move = record_move(conn, model, alias, target, principal.actor, "rollback")
        set_mlflow_alias(client, model, alias, target)
    audit(services.sink, principal.actor, "alias.rolled_back", f"model:{model}@{alias}",
          before={"version": move.previous_version},
          after={"version": target, "reason": reason}, ip=ip)
    return move



def list_models(services: Services, limit: int = 500) -> list[dict[str, Any]]:
    """Registered models with MLflow's aliases, the record's, the traffic mode and the
    versions blocked by aliases moved in MLflow directly (checked now, from the same listing).
    """
    client = mlflow_client(services.settings)
    try:
        registered = client.search_registered_models(max_results=min(limit, 1000))
    except MlflowException as exc:
        raise StoreError(f"MLflow could not be read: {exc.message}") from None
    ensure_tables(services.engine)
    out = []
    for rm in registered:
        alias_drift.check_alias_drift(services, rm.name,
                                      live={a: str(v) for a, v in rm.aliases.items()})
        plan = serving_plan(services.engine, rm.name)
        out.append({
            "name": rm.name,
            "mlflow_aliases": {a: str(v) for a, v in rm.aliases.items()},
            "aliases": recorded_aliases(services.engine, rm.name),
            "mode": plan.mode,
            "blocked": plan.blocked,
        })
    return out
