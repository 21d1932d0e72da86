"""The product's record of model aliases: every move, kept (MLflow keeps only the holder).

The record is authoritative; MLflow's aliases follow it. Also the checks of model names,
aliases and versions, and the few MLflow registry calls the promotion code makes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, overload

import mlflow
import redis
import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import Connection, Engine

from mlwb.db import metadata
from mlwb.errors import Conflict, InputError, NotFound, StoreError
from mlwb.settings import Settings

alias_history_t = sa.Table(
    "alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=True),  # None: the alias was removed
    sa.Column("previous_version", sa.String(32), nullable=True),
    sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("moved_by", sa.String(255), nullable=False),
    # promotion | rollback | drift_confirmed
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("promotion_id", sa.Integer, nullable=True),
    sa.Index("ix_alias_history_model_alias", "model", "alias", "id"),
)

MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\Z")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,63}\Z")
ALIAS_LOCK_WAIT = 15.0  # seconds a change waits for another change of the same alias


def ensure_tables(engine: Engine) -> None:
    """Create this module's table if missing (idempotent)."""
    metadata.create_all(engine, tables=[alias_history_t], checkfirst=True)


def utcnow() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """``value`` with UTC attached (SQLite hands back naive datetimes; all stored are UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def jsonable(obj: Any) -> dict[str, Any]:
    """A dataclass as a JSON-able dict (datetimes as ISO text)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(obj).items()}


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias, as the product recorded it."""

    id: int
    model: str
    alias: str
    version: str | None
    previous_version: str | None
    moved_at: datetime
    moved_by: str
    reason: str
    promotion_id: int | None

    @classmethod
    def from_row(cls, r: Any) -> AliasMove:
        """Build from an alias_history row."""
        return cls(r.id, r.model, r.alias, r.version, r.previous_version, utc(r.moved_at),
                   r.moved_by, r.reason, r.promotion_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return jsonable(self)


# --- validation and MLflow -------------------------------------------------------------------

@contextlib.contextmanager
def alias_lock(client: redis.Redis, model: str, alias: str) -> Iterator[None]:
    """Serialise changes to one alias across processes and hosts (approve, rollback, drift
    confirm): each reads the alias's history and appends to it, and two of them reading
    the same history at once would both act on it (a double rollback popped twice)."""
    lock = client.lock(f"wb:lock:alias:{model}:{alias}", timeout=60,
                       blocking_timeout=ALIAS_LOCK_WAIT)
    if not lock.acquire():
        raise Conflict(f"another change to {alias!r} of {model!r} is in progress; retry in a "
                       "moment", model=model, alias=alias)
    try:
        yield
    finally:
        with contextlib.suppress(redis.exceptions.LockError):  # expired: nothing to release
            lock.release()


def check_model_name(name: str) -> str:
    """A model name as MLflow and URLs accept it, or InputError."""
    if not isinstance(name, str) or not MODEL_RE.match(name):
        raise InputError("a model name is 1-128 letters, digits, _ . - (starting with a "
                         "letter or digit)", model=str(name)[:140])
    return name


def check_alias(alias: str) -> str:
    """An alias MLflow accepts (not ``latest`` nor ``v<N>``), or InputError."""
    if not isinstance(alias, str) or not ALIAS_RE.match(alias) or alias == "latest" or \
            re.fullmatch(r"v\d+", alias):
        raise InputError("an alias is lower-case letters, digits, _ or - (not 'latest' or "
                         "'v<N>'), e.g. champion or challenger", alias=str(alias)[:70])
    return alias


def check_version(version: Any) -> str:
    """A model version number as text, or InputError."""
    if isinstance(version, float) and version.is_integer():
        version = int(version)  # JSON's 5.0 is the integer 5
    text = str(version).strip()
    if isinstance(version, bool) or not re.fullmatch(r"[0-9]{1,9}", text) or int(text) < 1:
        raise InputError(f"a model version is a positive integer, got {version!r}",
                         version=str(version)[:40])
    return str(int(text))


def mlflow_client(settings: Settings) -> mlflow.MlflowClient:
    """A client of the MLflow store the settings name."""
    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri,
                               registry_uri=settings.registry_uri)


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or \
        "not found" in str(exc).lower()


def mlflow_aliases(client: mlflow.MlflowClient, model: str) -> dict[str, str]:
    """MLflow's aliases of ``model`` (alias -> version); NotFound if it is not registered."""
    try:
        return {a: str(v) for a, v in client.get_registered_model(model).aliases.items()}
    except MlflowException as exc:
        if _not_found(exc):
            raise NotFound(f"no registered model named {model!r}; see `wb models list`",
                           model=model) from None
        raise StoreError(f"MLflow could not be read: {exc.message}", model=model) from None


def require_version(client: mlflow.MlflowClient, model: str, version: str) -> None:
    """NotFound unless ``model`` version ``version`` is registered in MLflow."""
    mlflow_aliases(client, model)  # a clear message when the model itself is missing
    try:
        client.get_model_version(model, version)
    except MlflowException as exc:
        if _not_found(exc):
            raise NotFound(f"model {model!r} has no version {version}; see "
                           f"`wb models list`", model=model, version=version) from None
        raise StoreError(f"MLflow could not be read: {exc.message}", model=model) from None


def set_mlflow_alias(client: mlflow.MlflowClient, model: str, alias: str,
                     version: str | None) -> None:
    """Point (or, for None, remove) MLflow's alias; StoreError when MLflow refuses."""
    try:
        if version is None:
            client.delete_registered_model_alias(model, alias)
        else:
            client.set_registered_model_alias(model, alias, version)
    except MlflowException as exc:
        if _not_found(exc) or exc.error_code == "INVALID_PARAMETER_VALUE":
            # The version (or model) is gone from MLflow: retrying will not help.
            raise Conflict(f"MLflow cannot point {alias!r} of {model!r} at version {version}: "
                           f"{exc.message}; promote a version that exists instead",
                           model=model, alias=alias) from None
        raise StoreError(f"MLflow refused to move alias {alias!r} of {model!r}: "
                         f"{exc.message}", model=model, alias=alias) from None


def alias_moves(conn: Connection, model: str, alias: str | None = None) -> list[AliasMove]:
    """The recorded moves of ``model`` (of one alias if given), oldest first."""
    q = sa.select(alias_history_t).where(alias_history_t.c.model == model)
    if alias is not None:
        q = q.where(alias_history_t.c.alias == alias)
    return [AliasMove.from_row(r) for r in conn.execute(q.order_by(alias_history_t.c.id))]


def current_holders(moves: list[AliasMove]) -> dict[str, str | None]:
    """Alias -> holder after ``moves`` (None: removed)."""
    out: dict[str, str | None] = {}
    for m in moves:  # oldest first: the last move of an alias wins
        out[m.alias] = m.version
    return out


def recorded_aliases(engine: Engine, model: str) -> dict[str, str]:
    """The product's record: alias -> version for every alias of ``model`` that is set."""
    ensure_tables(engine)
    with engine.connect() as conn:
        held = current_holders(alias_moves(conn, model))
    return {a: v for a, v in held.items() if v is not None}


def record_move(conn: Connection, model: str, alias: str, version: str | None, by: str,
                reason: str, promotion_id: int | None = None) -> AliasMove:
    """Append one alias move to the history (inside the caller's transaction)."""
    previous = current_holders(alias_moves(conn, model, alias)).get(alias)
    values = dict(model=model, alias=alias, version=version, previous_version=previous,
                  moved_at=utcnow(), moved_by=by, reason=reason, promotion_id=promotion_id)
    new_id = conn.execute(sa.insert(alias_history_t).values(**values).returning(
        alias_history_t.c.id)).scalar_one()
    return AliasMove(id=new_id, **values)  # type: ignore[arg-type]
