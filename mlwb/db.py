"""The state database: small, transactional, shared by every process.

Users, tokens and (later) promotions and data set versions change in place and need
uniqueness, so they live in a relational DB rather than the append-only event lake:
SQLite (WAL, busy timeout) on one box, PostgreSQL on a team server. Events never go here.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    # Bumped to end every session of the user at once (disable, enable, password change).
    sa.Column("session_epoch", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("prefix", sa.String(16), nullable=False, unique=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("scopes", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
)

# Key/value facts the product needs exactly once (e.g. "demo seeded").
facts = sa.Table(
    "facts",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the tables created (idempotent)."""
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 10, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    create_tables(engine)
    return engine


def create_tables(engine: Engine, tables: list[sa.Table] | None = None) -> None:
    """Create missing tables; tolerate another process creating them at the same moment."""
    for attempt in range(5):
        try:
            metadata.create_all(engine, tables=tables, checkfirst=True)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
            # "table ... already exists": a sibling process won the race; check again.
            if attempt == 4:
                raise
            import time

            time.sleep(0.2 * (attempt + 1))


@functools.lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per URL per process (engines are pools; make them once)."""
    return make_engine(url)


def get_fact(engine: Engine, key: str) -> str | None:
    """A stored fact, or None."""
    with engine.connect() as conn:
        return conn.execute(sa.select(facts.c.value).where(facts.c.key == key)).scalar()


def set_fact(engine: Engine, key: str, value: str) -> None:
    """Store a fact, replacing an older value."""
    with engine.begin() as conn:
        conn.execute(sa.delete(facts).where(facts.c.key == key))
        conn.execute(sa.insert(facts).values(key=key, value=value))
