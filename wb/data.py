"""`wb data add/list/show`: content-hashed, profiled data sets."""

from __future__ import annotations

import json
from pathlib import Path

import click

from wb.context import emit, json_option, me, services


def _store():  # type: ignore[no-untyped-def]
    from mlwb.datasets import DatasetStore

    svc = services()
    return DatasetStore(svc.settings, svc.engine, svc.sink)


def register(cli: click.Group) -> None:
    """Add the ``data`` group."""

    @cli.group("data")
    def data() -> None:
        """Data sets for experiments (CSV or Parquet, versioned by content)."""

    @data.command("add")
    @click.argument("file", type=click.Path(path_type=Path))
    @click.option("--name", required=True, help="Data set name.")
    @click.option("--target", required=True, help="The column to predict.")
    @json_option
    def add(file: Path, name: str, target: str, as_json: bool) -> None:
        """Profile FILE and store it as a version of NAME (same data: same version)."""
        dv = _store().add(file, name, target, me())
        if as_json:
            click.echo(json.dumps({"name": dv.name, "version": dv.version, "rows": dv.rows,
                                   "columns": dv.n_columns, "uri": dv.uri}))
        else:
            click.echo(f"{dv.ref}: {dv.rows} rows, {dv.n_columns} columns, target {dv.target}"
                       f" -> use --param dataset={dv.ref}")

    @data.command("list")
    @json_option
    def list_(as_json: bool) -> None:
        """Every version, newest first."""
        rows = [{"name": d.name, "version": d.version, "rows": d.rows, "columns": d.n_columns,
                 "target": d.target, "created_at": d.created_at} for d in _store().list()]
        emit(rows, ["name", "version", "rows", "columns", "target", "created_at"], as_json)

    @data.command("show")
    @click.argument("ref")
    @json_option
    def show(ref: str, as_json: bool) -> None:
        """The profile of NAME or NAME@VERSION: types, nulls, ranges, categories."""
        dv = _store().resolve(ref)
        if as_json:
            click.echo(json.dumps({"ref": dv.ref, "uri": dv.uri, "profile": dv.profile},
                                  default=str))
            return
        click.echo(f"{dv.ref}  rows={dv.rows}  target={dv.target}  stored at {dv.uri}")
        rows = []
        for col, p in dv.profile["columns"].items():
            detail = (f"{p.get('min')} .. {p.get('max')}" if p["kind"] == "numeric" else
                      f"{p['distinct']} values: {', '.join(p['categories'][:5])}")
            rows.append({"column": col, "dtype": p["dtype"], "kind": p["kind"],
                         "nulls": p["nulls"], "range/categories": detail})
        emit(rows, ["column", "dtype", "kind", "nulls", "range/categories"], False)
