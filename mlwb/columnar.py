"""Shipments landed column-wise: decoded in C, in place, instead of work per row in Python.

A shipment (the spooled rows of one API process, see :mod:`api.serving.shipper`) holds up
to hundreds of rows of one table, as the API wrote them: compact JSON with sorted keys,
so each JSON column's text is already its stored form. Row by row, the ingest parsed each
row into Python objects, checked every value and wrote the JSON columns back out: over
20 us of CPU per prediction row, the larger part of the log's cost. Here msgspec decodes
each row in place in the shipment (no copy of its text) against the table's columns,
keeps each JSON column's text as it came (checked to be JSON, never turned into objects),
and the columns go to Arrow: a JSON column as one buffer of its texts, joined at once.

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

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from mlwb import defaults
from mlwb.tables import TABLES, Table

_NULL = msgspec.Raw(b"null")
_TYPES: dict[str, Any] = {"string": str, "int": int, "float": float, "bool": bool,
                          "timestamp": int}
_INT64 = (-(2**63), 2**63 - 1)
_STRING_BYTES = 2**31 - 1  # the most text one Arrow string array holds
_TS_RANGE = (defaults.EARLIEST_TS * 1_000_000, defaults.LATEST_TS * 1_000_000)


def split(blob: bytes) -> tuple[str, list[memoryview]] | None:
    """A shipment whose lines are all of one table: that table and each line's JSON text
    (views into ``blob``, nothing copied); None otherwise. A JSON text holds no raw
    newline, so every newline in a shipment ends a line. Every text must start with ``{``
    (a row is an object): a line the API wrote with ``json`` instead of orjson (a value
    orjson cannot write: its text differs) starts with a space, and the shipment lands row
    by row, as does one with a line of another table or text that is not UTF-8."""
    tab = blob.find(b"\t")
    if tab < 0 or not blob.endswith(b"\n"):
        return None
    prefix = blob[:tab + 1]
    if b"\n" in prefix:
        return None
    if not blob.isascii():
        try:  # msgspec checks the text of text columns, not of JSON values it keeps
            blob.decode("utf-8")
        except UnicodeDecodeError:
            return None
    view, skip, texts, at, end = memoryview(blob), tab + 1, [], 0, len(blob)
    while at < end:
        stop = blob.index(b"\n", at)
        # (the prefix holds no newline: a line that starts with it is longer than it)
        if not blob.startswith(prefix, at) or blob[at + skip] != 0x7B:  # "{"
            return None
        texts.append(view[at + skip:stop])
        at = stop + 1
    return prefix[:-1].decode("ascii", "replace"), texts


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
    return msgspec.json.Decoder(row), table


def land(name: str, texts: list[memoryview]) -> dict[str, Sequence[Any]] | None:
    """The rows of ``texts`` (one JSON object of ``name`` each, from :func:`split`) as
    stored values, one sequence per column (a JSON column's values are its texts as
    ``msgspec.Raw``: :func:`arrow` takes them as they are); None when the row path must
    take them."""
    found = _decoder(name)
    if found is None or not texts:
        return None
    decoder, table = found
    try:  # one call per row: cheaper than making one JSON array of them all
        rows = list(map(decoder.decode, texts))
    except (msgspec.DecodeError, ValueError, RecursionError):  # bad text, a bad value,
        return None  # two rows on a line, half a row
    names = decoder.type.__struct_fields__  # the table's columns, in order
    by_column = zip(*map(msgspec.structs.astuple, rows), strict=True)
    columns: dict[str, Sequence[Any]] = dict(zip(names, by_column, strict=True))
    for col in table.all_columns:
        if col.type in ("int", "timestamp"):
            low, high = _TS_RANGE if col.type == "timestamp" else _INT64
            values = columns[col.name]
            present = values if col.required else [v for v in values if v is not None]
            if present and (min(present) < low or max(present) > high):
                return None
    return columns


def arrow(name: str, columns: Mapping[str, Sequence[Any]]) -> pa.Table:
    """Columns from :func:`land` (of one shipment or several, joined) as an Arrow table;
    raises what ``pa.table`` raises for a value it cannot hold."""
    table = TABLES[name]
    return pa.table({col.name: _json_array(columns[col.name]) if col.type == "json"
                     else columns[col.name] for col in table.all_columns},
                    schema=table.arrow_schema)


def plain(name: str, columns: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Columns from :func:`land` with each JSON text as bytes (None for null): what the
    row path takes."""
    json_cols = {col.name for col in TABLES[name].all_columns if col.type == "json"}
    return {k: [None if v == _NULL else bytes(v) for v in vals] if k in json_cols
            else list(vals) for k, vals in columns.items()}


def _json_array(texts: Sequence[msgspec.Raw | bytes]) -> pa.Array:
    """JSON texts as one string array, built from their bytes at once: no conversion per
    value (their UTF-8 was checked with their shipment's). ``null`` is a null."""
    n = len(texts)
    sizes = np.fromiter(map(len, texts), np.int64, n)
    nulls = [i for i in np.flatnonzero(sizes == len(_NULL)).tolist() if texts[i] == _NULL]
    if int(sizes.sum()) > _STRING_BYTES:  # beyond one array's offsets: let Arrow chunk it
        return pa.array([None if v == _NULL else bytes(v) for v in texts], pa.string())
    validity = None
    if nulls:
        gone = set(nulls)
        texts = [b"" if i in gone else v for i, v in enumerate(texts)]
        sizes[nulls] = 0
        valid = np.ones(n, np.bool_)
        valid[nulls] = False
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(sizes, out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), n, [validity, pa.py_buffer(offsets),
                                                  pa.py_buffer(b"".join(texts))],
                                 null_count=len(nulls))
