"""What the product itself knows about registered model versions (beyond MLflow).

MLflow tags can be edited by anyone with MLflow access, so the SHA-256 of each registered
version's artifacts is recorded here, in the state DB, at registration; serving checks it
before loading. Other parts add their registry facts (promotions, aliases history) in
modules of their own.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlwb.db import create_tables, metadata

model_hashes = sa.Table(
    "model_hashes",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)


def ensure_tables(engine: Engine) -> None:
    """Create this module's tables if missing (idempotent)."""
    create_tables(engine, [model_hashes])


def artifact_digest(path: Path) -> str:
    """SHA-256 over every file under ``path`` (relative names and contents, sorted)."""
    h = hashlib.sha256()
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(root) if f != root else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def record_hash(
    engine: Engine, name: str, version: str | int, sha256: str, run_id: str | None = None
) -> None:
    """Record the artifact hash of a newly registered version (once; never overwritten)."""
    ensure_tables(engine)
    with engine.begin() as conn:
        exists = conn.execute(sa.select(model_hashes.c.sha256).where(
            model_hashes.c.name == name, model_hashes.c.version == str(version))).first()
        if exists is None:
            conn.execute(sa.insert(model_hashes).values(
                name=name, version=str(version), sha256=sha256, run_id=run_id,
                recorded_at=datetime.now(UTC)))


def expected_hash(engine: Engine, name: str, version: str | int) -> str | None:
    """The hash recorded at registration, or None if the product never registered it."""
    ensure_tables(engine)
    with engine.connect() as conn:
        return conn.execute(sa.select(model_hashes.c.sha256).where(
            model_hashes.c.name == name, model_hashes.c.version == str(version))).scalar()
