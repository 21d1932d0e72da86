"""The lake's manifest: the one file that says which segment files make up each table.

The ingest replaces it atomically (write, fsync, rename) after each commit; readers read it
and query exactly the files it lists. It also carries the stream position already landed
(so a restarted ingest neither skips nor repeats an event) and the audit chain head.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlwb import fastjson
from mlwb.tables import TABLES

MANIFEST = "manifest.json"


@dataclass
class Segment:
    """One immutable Parquet file of one table."""

    file: str
    rows: int
    min_ts: int
    max_ts: int


@dataclass
class Manifest:
    """What the lake holds at one version."""

    version: int = 0
    last_id: str = "0-0"
    audit_seq: int = 0
    audit_hash: str = ""
    tables: dict[str, list[Segment]] = field(default_factory=dict)
    # Files superseded by compaction, deleted once ``after`` (epoch seconds) has passed.
    garbage: list[dict[str, Any]] = field(default_factory=list)

    def files(self, table: str) -> list[str]:
        """Segment file names of ``table``, oldest first."""
        return [s.file for s in self.tables.get(table, [])]

    def to_json(self) -> bytes:
        """Serialized form (built field by field: ``dataclasses.asdict`` deep-copies every
        segment and was a quarter of the ingest's CPU under a steady trickle of events)."""
        return fastjson.dumps({
            "version": self.version, "last_id": self.last_id, "audit_seq": self.audit_seq,
            "audit_hash": self.audit_hash,
            "tables": {t: [{"file": s.file, "rows": s.rows, "min_ts": s.min_ts,
                            "max_ts": s.max_ts} for s in segs]
                       for t, segs in self.tables.items()},
            "garbage": self.garbage,
        })

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse a manifest."""
        raw = fastjson.loads(text)
        tables = {t: [Segment(**s) for s in segs] for t, segs in raw.pop("tables", {}).items()}
        return cls(tables=tables, **raw)


def read_manifest(lake_dir: Path) -> Manifest:
    """The current manifest, or an empty one for a new lake."""
    path = lake_dir / MANIFEST
    try:
        return Manifest.from_json(path.read_bytes())
    except FileNotFoundError:
        return Manifest()


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_parquet(lake_dir: Path, name: str, table: pa.Table, compression: str = "zstd"
                  ) -> None:
    """Write segment ``name`` (``TABLE/FILE``, relative to ``lake_dir``) via a temp file,
    fsynced, renamed, with the encodings its table's columns call for
    (:attr:`mlwb.tables.Table.parquet_options`).

    The caller fsyncs the folder once its renames are done.
    """
    tmp = lake_dir / f"{name}.tmp"
    known = TABLES.get(name.split("/", 1)[0])
    options = known.parquet_options if known is not None else {}
    pq.write_table(table, tmp, compression=compression, **options)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, lake_dir / name)


def write_manifest(lake_dir: Path, manifest: Manifest) -> None:
    """Atomically install ``manifest`` as the lake's current state."""
    write_atomic(lake_dir / MANIFEST, manifest.to_json())
