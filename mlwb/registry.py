"""What the product itself knows about registered model versions (beyond MLflow).

MLflow tags can be edited by anyone with MLflow access, so the SHA-256 of each registered
version's artifacts is recorded here, in the state DB, at registration; serving checks it
before loading. Other parts add their registry facts (promotions, aliases history) in
modules of their own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlwb.db import create_tables, metadata
from mlwb.errors import Conflict, NotFound, StoreError

log = logging.getLogger(__name__)

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


def version_artifact_uri(client: Any, name: str, version: str) -> tuple[str, str]:
    """``(artifact URI, run id)`` of a registered version (MLflow 3 logged models and runs)."""
    import mlflow

    if not (str(version).isascii() and str(version).isdigit()):
        raise NotFound(f"model {name!r} has no version {version!r}; versions are numbers, see "
                       "`wb models list`", model=name, version=str(version)[:40])
    try:
        mv = client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as exc:
        raise NotFound(f"model {name!r} has no version {version!r}; see `wb models list`",
                       model=name, version=version) from exc
    source = mv.source or ""
    if source.startswith("models:/m-"):
        logged = client.get_logged_model(source.removeprefix("models:/").split("/")[0])
        return logged.artifact_location, mv.run_id or ""
    if source.startswith("runs:/"):
        run_id, _, path = source.removeprefix("runs:/").partition("/")
        return client.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + path, run_id
    return source, mv.run_id or ""


def fetch_verified(
    client: Any, engine: Engine, name: str, version: str, dest: Path
) -> tuple[Path, str]:
    """Download a version's artifacts under ``dest`` and check them against the recorded hash.

    Returns ``(local path, run id)``; raises Conflict (409) when the hash is missing or
    differs: such a version is never loaded.
    """
    uri, run_id = version_artifact_uri(client, name, version)  # 404 before anything else
    expected = expected_hash(engine, name, version)
    if expected is None:
        raise Conflict(
            f"model {name!r} version {version} has no artifact hash recorded at registration, "
            "so it cannot be verified and is not served; register it through ml-workbench "
            "(`wb run` / the experiments API), which records the hash",
            model=name, version=version)
    from mlflow.artifacts import download_artifacts
    from mlflow.utils.yaml_utils import write_yaml

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    dest.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=f"{name}-{version}-", dir=dest))
    try:
        local = Path(download_artifacts(artifact_uri=uri, dst_path=str(target)))
    except Exception as exc:
        raise StoreError(f"could not download model {name!r} version {version} from {uri}: "
                         f"{exc}", model=name, version=version) from exc
    # What `download_artifacts("models:/NAME/VERSION")` adds, so the digest matches the one
    # experiments.tracking.register recorded from exactly that download.
    write_yaml(str(local), "registered_model_meta",
               {"model_name": name, "model_version": str(version)}, overwrite=True,
               ensure_yaml_extension=False)
    actual = artifact_digest(local)
    if actual != expected:
        log.error("artifact hash mismatch for %s v%s: expected %s, found %s", name, version,
                  expected, actual)
        raise Conflict(
            f"the artifacts of model {name!r} version {version} changed since registration "
            f"(recorded sha256 {expected[:12]}…, found {actual[:12]}…); it is not served. "
            "Restore the original artifacts or register a new version.",
            model=name, version=version)
    return local, run_id
