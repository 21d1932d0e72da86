"""The event tables: every row that lands in the lake belongs to one of these.

Each table has ``id`` (unique, the idempotency key) and ``ts`` (UTC) first. ``json`` columns
hold any JSON value, stored as canonical JSON text. Later parts of the product register
their tables here (predictions, feedback, run mirror, report rows), so the ingest, the
readers and the validation at record time all agree on one schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import orjson
import pyarrow as pa

from mlwb import defaults, fastjson
from mlwb.errors import InputError

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}
DUCK_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "json": "VARCHAR",
}


@dataclass(frozen=True)
class Column:
    """One column: a name and one of the types in ``ARROW_TYPES``."""

    name: str
    type: str
    required: bool = False
    # Nearly every value differs (ids): Parquet's dictionary encoding is skipped for it.
    distinct: bool = False


@dataclass(frozen=True)
class Table:
    """A named set of columns; ``id`` and ``ts`` are implied."""

    name: str
    columns: tuple[Column, ...]

    @cached_property
    def all_columns(self) -> tuple[Column, ...]:
        """``id``, ``ts``, then the table's own columns."""
        return (Column("id", "string", True, distinct=True), Column("ts", "timestamp", True),
                *self.columns)

    @cached_property
    def plan(self) -> tuple[tuple[str, type | None, Column], ...]:
        """Per column: its name, the Python type it is stored as unchanged (None: always
        coerced), the column."""
        return tuple((c.name, _AS_IS.get(c.type), c) for c in self.all_columns)

    @cached_property
    def column_names(self) -> frozenset[str]:
        """The names of ``all_columns`` (checked for every row the ingest lands)."""
        return frozenset(c.name for c in self.all_columns)

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Parquet schema of the table's segments."""
        return pa.schema([(c.name, ARROW_TYPES[c.type]) for c in self.all_columns])

    @cached_property
    def parquet_options(self) -> dict[str, list[str]]:
        """How a segment's columns are written: a dictionary only for text that repeats
        (a model name, an alias), min/max statistics for every column but JSON text.
        Trying a dictionary on ids, times and JSON texts, and statistics on texts of a
        kilobyte, cost more than the rest of writing them (prediction rows with distinct
        inputs: a fresh segment 1.4 -> 1.0 us per row), and no reader filters on them
        by range."""
        return {"use_dictionary": [c.name for c in self.all_columns
                                   if c.type == "string" and not c.distinct],
                "write_statistics": [c.name for c in self.all_columns if c.type != "json"]}

    def empty_select(self) -> str:
        """A typed, empty SELECT with the table's columns (for a table with no segment yet)."""
        cols = ", ".join(
            f"CAST(NULL AS {DUCK_TYPES[c.type]}) AS {c.name}" for c in self.all_columns
        )
        return f"SELECT {cols} WHERE false"


TABLES: dict[str, Table] = {}


def register(table: Table) -> Table:
    """Add a table to the lake's schema (idempotent for an identical table)."""
    existing = TABLES.get(table.name)
    if existing is not None and existing != table:
        raise ValueError(f"table {table.name!r} is already registered with other columns")
    TABLES[table.name] = table
    return table


register(Table("events", (
    Column("kind", "string", True),
    Column("source", "string"),
    Column("actor", "string"),
    Column("payload", "json"),
)))
register(Table("audit", (
    Column("seq", "int"),
    Column("actor", "string", True),
    Column("action", "string", True),
    Column("target", "string"),
    Column("before", "json"),
    Column("after", "json"),
    Column("ip", "string"),
    Column("prev_hash", "string"),
    Column("hash", "string"),
)))
register(Table("job_events", (
    Column("job_id", "string", True),
    Column("run_id", "string"),
    Column("status", "string", True),
    Column("payload", "json"),
)))
# Rows the ingest could not store (kept, never dropped): the raw entry and the reason.
register(Table("dead_letters", (
    Column("stream_id", "string"),
    Column("raw", "string"),
    Column("reason", "string"),
)))


def canonical_json(value: Any) -> str:
    """JSON text that is the same for equal values (sorted keys, no spaces).

    The audit chain hashes this text: it must never change (see ``stored_json``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class _Refused(ValueError):
    """A value refused for a reason worth putting in the error message."""


def stored_json(value: Any) -> str:
    """The text a JSON column stores: sorted keys, no spaces (orjson, several times faster
    than ``json``; non-finite floats become ``null``, which every JSON reader takes).

    Unpaired surrogates (which ``json`` accepts in a request body as ``"\\ud800"``) are
    stored as U+FFFD: DuckDB's JSON functions refuse the escape, and one such row would make
    every query over the column fail."""
    try:  # orjson writes no escape but \u00XX: no surrogate can hide in its text
        return orjson.dumps(value, default=str, option=fastjson.SORTED).decode()
    except TypeError:  # what only `json` writes: a lone surrogate, an int beyond 64 bits
        try:
            text = canonical_json(value)
            if "\\ud" in text or "\\uD" in text:  # a surrogate, written as an escape
                text = fastjson.dumps(_scrub(value), default=str, sort_keys=True).decode()
        except RecursionError as exc:
            raise _Refused("nested too deeply") from exc
        return text


def _scrub(value: Any) -> Any:
    """``value`` with every unpaired surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


# Column types whose values of exactly this Python type are stored unchanged (a str only
# when it is ASCII: anything else is checked for unpaired surrogates first; an int is
# always checked against 64 bits).
_AS_IS: dict[str, type] = {"string": str, "float": float}


def _preview(value: Any) -> str:
    """A short, printable view of a bad value for an error message."""
    try:
        text = str(value)
    except (ValueError, RecursionError):  # a huge int (str's digit limit), deep nesting
        return f"<{type(value).__name__} too large to show>"
    return repr(text[:40])


def _coerce(col: Column, value: Any, table: str) -> Any:
    if value is None:
        if col.required:
            raise InputError(f"{table}.{col.name} is required", table=table, column=col.name)
        return None
    kind = col.type
    why = ""  # a reason beyond the type and the value, when there is one
    try:
        if kind == "json":
            return stored_json(value)
        if kind == "string":
            if not isinstance(value, str | int | float):
                raise TypeError
            text = str(value)
            if not text.isascii():
                text.encode("utf-8")  # an unpaired surrogate cannot be stored: refused
            return text
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            number = int(value)
            if not -(2**63) <= number < 2**63:
                raise _Refused("beyond 64 bits")
            return number
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError
            return float(value)
        if kind == "bool":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "timestamp":
            return to_micros(value)
    except UnicodeEncodeError:
        why = " (it holds an unpaired surrogate, which is not text that can be stored)"
    except RecursionError:
        why = " (nested too deeply)"
    except _Refused as exc:
        why = f" ({exc})"
    except (TypeError, ValueError, OverflowError):
        why = ""
    raise InputError(
        f"{table}.{col.name} must be {kind}, got {type(value).__name__} {_preview(value)}{why}",
        table=table,
        column=col.name,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(value: Any) -> int:
    """Microseconds since the epoch (UTC) from a datetime, ISO text, an int of microseconds
    (the stored form, so normalizing twice is harmless) or a float of seconds; raises
    ValueError outside 2000..2100, which also catches seconds passed as an int."""
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        micros = (dt - _EPOCH) // _MICROSECOND  # exact (through a float, 1% were 1 us early)
    elif isinstance(value, str):
        return to_micros(datetime.fromisoformat(value.replace("Z", "+00:00")))
    elif isinstance(value, int) and not isinstance(value, bool):
        micros = value
    elif isinstance(value, float):
        micros = round(value * 1_000_000)  # the nearest microsecond, not truncated
    else:
        raise TypeError(value)
    if not defaults.EARLIEST_TS * 1_000_000 <= micros <= defaults.LATEST_TS * 1_000_000:
        raise ValueError(f"time {value!r} is outside 2000-01-01 .. 2100-01-01")
    return micros


def normalize_row(table_name: str, row: dict[str, Any]) -> dict[str, Any]:
    """Validate ``row`` against its table and return it in stored form; raise InputError."""
    table = TABLES.get(table_name)
    if table is None:
        raise InputError(
            f"unknown table {table_name!r}; known tables: {', '.join(sorted(TABLES))}",
            table=table_name,
        )
    if not isinstance(row, dict):
        raise InputError(f"a {table_name} row must be a JSON object", table=table_name)
    if not row.keys() <= table.column_names:
        extra = sorted(set(row) - table.column_names)
        raise InputError(
            f"{table_name} has no column(s) {', '.join(extra)}; columns are "
            f"{', '.join(c.name for c in table.all_columns)}",
            table=table_name,
            column=extra[0],
        )
    # A value already of its column's stored type is kept as is (what _coerce would return).
    return {name: v if type(v := row.get(name)) is kept and (
                kept is not str or v.isascii())  # type: ignore[attr-defined]
            else _coerce(col, v, table_name) for name, kept, col in table.plan}
