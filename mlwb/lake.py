"""Reading the lake: DuckDB over the Parquet segments the manifest lists.

Readers never open a file the ingest writes (segments are immutable once listed), so any
number of processes read while the ingest writes, seeing data as fresh as the last commit
(``INGEST_FLUSH_SECONDS``). A DuckDB connection is not thread-safe: each query gets its own
in-memory connection with one view per table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from mlwb.errors import StoreError
from mlwb.manifest import Manifest, read_manifest
from mlwb.tables import TABLES


class Lake:
    """Read access to the event lake under ``lake_dir``."""

    def __init__(self, lake_dir: Path) -> None:
        self.lake_dir = Path(lake_dir)

    def manifest(self) -> Manifest:
        """The current manifest."""
        return read_manifest(self.lake_dir)

    def connect(self, manifest: Manifest | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with a view per table, pinned to one manifest."""
        import mlwb.tables_all  # noqa: F401  (every module's tables, so every view exists)

        manifest = manifest or self.manifest()
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone='UTC'")
        for name, table in TABLES.items():
            files = [str(self.lake_dir / f) for f in manifest.files(name)]
            if files:
                listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                con.execute(
                    f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listing}], "
                    "union_by_name=true)"
                )
            else:
                con.execute(f"CREATE VIEW {name} AS {table.empty_select()}")
        return con

    def _run(self, sql: str, params: Sequence[Any] | None, as_df: bool) -> Any:
        last: Exception | None = None
        # A file can vanish under a reader that held a manifest past the compaction grace
        # period; a fresh manifest fixes that, so retry once.
        for _ in range(2):
            try:
                con = self.connect()  # its views open every listed file already
            except duckdb.IOException as exc:
                last = exc
                continue
            try:
                cur = con.execute(sql, list(params or []))
                return cur.df() if as_df else cur.fetchall()
            except duckdb.IOException as exc:
                last = exc
            finally:
                con.close()
        raise StoreError(f"could not read the lake at {self.lake_dir}: {last}")

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a SQL query over the tables."""
        return self._run(sql, params, as_df=False)  # type: ignore[no-any-return]

    def df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """A DataFrame of a SQL query over the tables."""
        return self._run(sql, params, as_df=True)  # type: ignore[no-any-return]

    def count(self, table: str) -> int:
        """Rows in ``table`` (from the manifest, without reading the files)."""
        return sum(s.rows for s in self.manifest().tables.get(table, []))
