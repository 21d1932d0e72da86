"""Shipments landed column-wise: one decode in C per shipment instead of work per row.

A shipment (the spooled rows of one API process, see :mod:`api.serving.shipper`) holds up
to hundreds of rows of one table, as the API wrote them: compact JSON with sorted keys,
so each JSON column's text is already its stored form. Row by row, the ingest parsed each
row into Python objects, checked every value and wrote the JSON columns back out: over
20 us of CPU per prediction row, the larger part of the log's cost. Here one msgspec call
decodes the whole shipment against the table's columns, keeps each JSON column's text as
it came (checked to be JSON, never turned into objects), and the columns go to Arrow.

Only what this path stores as the row path would is taken; for anything else :func:`land`
returns None and the shipment lands row by row, each bad row a dead letter of its own:
- the text is JSON and UTF-8, every row an object with only the table's columns, each
  value already of its column's stored type (text for a text column, an int of
  microseconds for a time, and so on: the row path's conversions are not repeated here),
  required ones present;
- ints within 64 bits and times within the lake's range.
JSON text is kept as it was shipped. The API's rows come from orjson with sorted keys: the
very text the row path writes (a row only ``json`` can write, the API marks with a leading
space, and its shipment lands row by row). Another producer's text may differ from what
the row path would write and still be valid JSON: keys in their order, escapes, number
forms and spaces as written, a repeated key kept twice (the row path keeps the last), a
number beyond a double's range as written (the row path: ``null``; DuckDB reads it as
infinity), nesting a little deeper than the row path takes.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import msgspec

from mlwb import defaults
from mlwb.tables import TABLES, Table

_NULL = msgspec.Raw(b"null")
_TYPES: dict[str, Any] = {"string": str, "int": int, "float": float, "bool": bool,
                          "timestamp": int}
_INT64 = (-(2**63), 2**63 - 1)
_TS_RANGE = (defaults.EARLIEST_TS * 1_000_000, defaults.LATEST_TS * 1_000_000)


def split(blob: bytes) -> tuple[str, bytes, int] | None:
    """A shipment whose lines are all of one table: that table, its rows as one JSON array
    and how many lines it has; None otherwise. A JSON text holds no raw newline, so every
    newline in a shipment ends a line. A line the API wrote with ``json`` instead of orjson
    (a value orjson cannot write: its text differs) starts with a space, and the shipment
    lands row by row."""
    table, tab, rest = blob.partition(b"\t")
    if not tab or not rest.endswith(b"\n") or b"\n" in table or rest.startswith(b" "):
        return None
    body = rest[:-1]
    sep = b"\n" + table + b"\t"
    if sep + b" " in body:  # (a long needle: a fast search, unlike a 2-byte one)
        return None
    rows = body.replace(sep, b",")
    if b"\n" in rows:  # a line of another table, or not a line of a table at all
        return None
    # Each separator replaced shortened the text by len(sep) - 1: no count pass needed.
    return (table.decode("ascii", "replace"), b"[" + rows + b"]",
            (len(body) - len(rows)) // (len(sep) - 1) + 1)


_DECODERS: dict[str, tuple[msgspec.json.Decoder[Any], Table] | None] = {}


def _decoder(name: str) -> tuple[msgspec.json.Decoder[Any], Table] | None:
    """The decoder of ``name``'s rows; None for a table this path does not take."""
    if name in _DECODERS:
        return _DECODERS[name]
    table = TABLES.get(name)
    if table is None:  # not registered (yet): not remembered
        return None
    _DECODERS[name] = found = _build(table)
    return found


def _build(table: Table) -> tuple[msgspec.json.Decoder[Any], Table] | None:
    if table.name == "audit":  # audit rows are chained one by one
        return None
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for col in table.all_columns:
        if col.type == "json":
            if col.required:
                return None
            fields.append((col.name, msgspec.Raw, _NULL))
        elif col.required:
            fields.append((col.name, _TYPES[col.type]))
        else:
            fields.append((col.name, _TYPES[col.type] | None, None))
    row = msgspec.defstruct(f"{table.name}_row", fields, forbid_unknown_fields=True,
                            kw_only=True)
    return msgspec.json.Decoder(list[row]), table  # type: ignore[valid-type]


def land(name: str, rows_json: bytes, lines: int) -> dict[str, list[Any]] | None:
    """The rows of ``rows_json`` (one JSON array of ``name`` rows, from ``lines`` lines)
    as lists of stored values, one per column (Arrow takes them as they are); None when
    the row path must take them."""
    found = _decoder(name)
    if found is None:
        return None
    decoder, table = found
    if not rows_json.isascii():
        try:  # msgspec checks the text of text columns, not of JSON values it keeps
            rows_json.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        rows = decoder.decode(rows_json)
    except (msgspec.DecodeError, ValueError, RecursionError):  # bad text, a bad value
        return None
    if len(rows) != lines:  # a line of two rows, or half a row: the row path refuses it
        return None
    columns: dict[str, list[Any]] = {}
    for col in table.all_columns:
        values = list(map(attrgetter(col.name), rows))
        if col.type == "json":
            values = [None if v == _NULL else bytes(v) for v in values]
        elif col.type in ("int", "timestamp"):
            low, high = _TS_RANGE if col.type == "timestamp" else _INT64
            present = [v for v in values if v is not None] if not col.required else values
            if present and (min(present) < low or max(present) > high):
                return None
        columns[col.name] = values
    return columns
