"""Data sets: content-hashed versions of a table, profiled at add time, stored once.

A version is the SHA-256 of the data itself (column names, dtypes, values; not the file's
bytes), so the same table added twice, as CSV or Parquet, is one version. The canonical
Parquet copy goes to the artifact store under ``<artifact_location>/datasets/NAME/VERSION``
(a local folder by default, the S3 bucket in the full stack), where every worker host can
read it; the state DB keeps the catalogue (name, version, target, profile).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlwb.audit import audit
from mlwb.db import create_tables, metadata
from mlwb.errors import Conflict, InputError, NotFound
from mlwb.events import EventSink
from mlwb.settings import Settings
from mlwb.users import Principal

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
# Categorical profile: at most this many distinct values are listed.
MAX_CATEGORIES = 20

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(16), primary_key=True),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("n_columns", sa.Integer, nullable=False),
    sa.Column("profile", sa.Text, nullable=False),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("created_by", sa.String(128), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class DatasetVersion:
    """One stored version of a data set."""

    name: str
    version: str
    target: str
    rows: int
    n_columns: int
    profile: dict[str, Any]
    uri: str
    created_at: datetime
    created_by: str | None = None

    @property
    def ref(self) -> str:
        """``NAME@VERSION``: what a run records and a reproduction asks for."""
        return f"{self.name}@{self.version}"


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; InputError says why a file cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}", path=str(path))
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif suffix in (".csv", ".txt"):
            df = pd.read_csv(path)
        else:
            raise InputError(f"{path.name}: unsupported file type {suffix or '(none)'}; "
                             "add a .csv or .parquet file", path=str(path))
    except InputError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for a damaged file
        raise InputError(f"{path.name} is not a readable {suffix[1:]} file ({exc}); "
                         "check the format and encoding", path=str(path)) from None
    if df.empty or df.shape[1] == 0:
        raise InputError(f"{path.name} has no rows; add a file with data", path=str(path))
    return df


def content_hash(df: pd.DataFrame) -> str:
    """A version id from the data itself: column names, dtypes and every value."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def profile(df: pd.DataFrame, target: str) -> dict[str, Any]:
    """Types, nulls, ranges and categories of every column."""
    cols: dict[str, Any] = {}
    for name in df.columns:
        s = df[name]
        info: dict[str, Any] = {"dtype": str(s.dtype), "nulls": int(s.isna().sum())}
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            counts = s.astype("string").value_counts(dropna=True)
            info["kind"] = "categorical"
            info["distinct"] = int(counts.size)
            info["categories"] = [str(v) for v in counts.index[:MAX_CATEGORIES]]
        else:
            info["kind"] = "numeric"
            info["min"] = None if s.dropna().empty else float(s.min())
            info["max"] = None if s.dropna().empty else float(s.max())
            info["mean"] = None if s.dropna().empty else float(s.mean())
        cols[str(name)] = info
    return {"rows": len(df), "target": target, "columns": cols}


def check_target(df: pd.DataFrame, target: str, label: str) -> None:
    """Refuse a table whose target column is missing, empty, or the only column."""
    if target not in df.columns:
        raise InputError(f"{label} has no target column {target!r}; its columns are "
                         f"{', '.join(map(str, df.columns[:30]))}", target=target)
    if df.shape[1] < 2:
        raise InputError(f"{label} has only the target column; add feature columns",
                         target=target)
    if df[target].isna().all():
        raise InputError(f"{label}: target column {target!r} is empty", target=target)


class DatasetStore:
    """The catalogue of data sets (state DB) and their stored copies (artifact store)."""

    def __init__(self, settings: Settings, engine: Engine, sink: EventSink) -> None:
        self.settings = settings
        self.engine = engine
        self.sink = sink
        create_tables(engine, [datasets])

    def _root(self) -> str:
        return f"{self.settings.artifact_location.rstrip('/')}/datasets"

    def add(self, path: Path, name: str, target: str, by: Principal) -> DatasetVersion:
        """Profile and store ``path`` as a version of ``name``; the same data is stored once."""
        if not NAME_RE.match(name or ""):
            raise InputError(f"data set name {name!r} is invalid; use letters, digits, _ . - "
                             "(start with a letter, at most 64)", name=name)
        df = read_table(Path(path))
        check_target(df, target, Path(path).name)
        df.columns = [str(c) for c in df.columns]
        version = content_hash(df)
        existing = self._row(name, version)
        if existing is not None:
            if existing.target != target:
                raise Conflict(f"{name}@{version} already exists with target "
                               f"{existing.target!r}; use another name", name=name)
            return existing
        prof = profile(df, target)
        uri = f"{self._root()}/{name}/{version}"
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "data.parquet"
            df.to_parquet(local, index=False)
            get_artifact_repository(uri).log_artifact(str(local))
        row = {"name": name, "version": version, "target": target, "rows": len(df),
               "n_columns": df.shape[1], "profile": json.dumps(prof), "uri": uri,
               "source": Path(path).name, "created_by": by.actor,
               "created_at": datetime.now(UTC)}
        with self.engine.begin() as conn:
            conn.execute(sa.insert(datasets).values(**row))
        audit(self.sink, by.actor, "dataset.added", f"dataset:{name}@{version}",
              after={"rows": len(df), "columns": df.shape[1], "target": target})
        return self._from_row(row)

    @staticmethod
    def _from_row(row: Any) -> DatasetVersion:
        m = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
        return DatasetVersion(
            name=m["name"], version=m["version"], target=m["target"], rows=m["rows"],
            n_columns=m["n_columns"], profile=json.loads(m["profile"]), uri=m["uri"],
            created_at=m["created_at"], created_by=m.get("created_by"))

    def _row(self, name: str, version: str) -> DatasetVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(datasets).where(
                datasets.c.name == name, datasets.c.version == version)).first()
        return None if row is None else self._from_row(row)

    def list(self, name: str | None = None) -> list[DatasetVersion]:
        """Every version (of ``name``), newest first."""
        q = sa.select(datasets).order_by(datasets.c.created_at.desc())
        if name:
            q = q.where(datasets.c.name == name)
        with self.engine.connect() as conn:
            return [self._from_row(r) for r in conn.execute(q)]

    def resolve(self, ref: str) -> DatasetVersion:
        """``NAME`` (newest version) or ``NAME@VERSION`` (a prefix of 6+ characters works)."""
        name, _, version = ref.partition("@")
        versions = self.list(name)
        if not versions:
            known = sorted({d.name for d in self.list()})
            raise NotFound(f"no data set named {name!r}; add one with `wb data add FILE --name "
                           f"{name} --target COL`" + (f" (known: {', '.join(known)})"
                                                      if known else ""), dataset=name)
        if not version:
            return versions[0]
        matches = [d for d in versions if d.version.startswith(version)]
        if len(version) < 6 or len(matches) != 1:
            raise NotFound(f"data set {name!r} has no version {version!r}; versions: "
                           f"{', '.join(d.version for d in versions[:10])}", dataset=name)
        return matches[0]

    def load(self, dv: DatasetVersion) -> pd.DataFrame:
        """The stored table of a version (downloaded once per host into a local cache)."""
        cache = self.settings.data_dir / "datasets-cache" / dv.name / dv.version
        local = cache / "data.parquet"
        if not local.exists():
            from mlflow.store.artifact.artifact_repository_registry import (
                get_artifact_repository,
            )

            cache.mkdir(parents=True, exist_ok=True)
            get_artifact_repository(dv.uri).download_artifacts("data.parquet", str(cache))
        return pd.read_parquet(local)
