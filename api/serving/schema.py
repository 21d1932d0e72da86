"""Input validation against a model's signature, before the model sees anything.

Bodies arrive as records (``[{"col": value}]``), positional rows (``[[v1, v2]]``, in the
signature's column order) or columns (``{"col": [values]}``). Each is checked column by column
(missing or extra columns are a 400, a wrong type or a NaN where the column is required a
422, too many rows a 413, always naming the column and row) and turned into one DataFrame
whose dtypes are the ones ``mlflow.pyfunc`` would enforce, so every model path sees the same
frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from mlwb.errors import InputError, Unprocessable

MAX_ROWS = 10_000  # rows per request; more is a 413 (split the batch)

NUMPY_TYPES = {
    "double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32,
    "boolean": np.bool_, "string": object, "binary": object, "datetime": object,
}


class TooLarge(InputError):
    """The request carries more rows than one request may (HTTP 413)."""

    status = 413
    code = "too_large"


class Unsupported(InputError):
    """The body's media type is not one this endpoint reads (HTTP 415)."""

    status = 415
    code = "unsupported_media_type"


@dataclass(frozen=True)
class Field:
    """One input column of a signature."""

    name: str
    kind: str
    required: bool = True

    def coerce(self, value: Any, row: int) -> Any:
        """The value as the model expects it, or Unprocessable naming the column and row."""
        kind = self.kind
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if self.required:
                raise Unprocessable(
                    f"column {self.name!r} row {row}: a value is required (got "
                    f"{'null' if value is None else 'NaN'})", column=self.name, row=row)
            return None if kind in ("string", "binary", "datetime") else float("nan")
        if kind in ("double", "float"):
            if type(value) is float or (type(value) is int):
                try:
                    finite = math.isfinite(value)
                except OverflowError:  # an integer beyond float64's range
                    finite = False
                if not finite:
                    raise Unprocessable(f"column {self.name!r} row {row}: infinity, or a "
                                        "number beyond the float64 range, is not allowed",
                                        column=self.name, row=row)
                return value
            expected = "a number"
        elif kind in ("long", "integer"):
            if type(value) is int:
                return value
            if type(value) is float and value.is_integer():
                return int(value)
            expected = "an integer"
        elif kind == "boolean":
            if type(value) is bool:
                return value
            expected = "true or false"
        elif kind == "datetime":
            if isinstance(value, str) and _is_time(value):
                return value
            expected = "a date or time (ISO 8601)"
        else:
            if isinstance(value, str):
                return value
            expected = "a string"
        raise Unprocessable(
            f"column {self.name!r} row {row}: expected {expected} ({kind}), got "
            f"{_type_name(value)} {str(value)[:30]!r}", column=self.name, row=row)


def _is_time(text: str) -> bool:
    """Whether pandas reads ``text`` as a time (as MLflow's datetime enforcement does)."""
    try:
        return pd.Timestamp(text) is not pd.NaT
    except (ValueError, TypeError, OverflowError):
        return False


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


class Parsed:
    """A validated request: each row as received (for the log) and the model's input.

    The all-numeric path keeps a float64 matrix and builds the DataFrame only if a model
    path asks for it (a compiled linear model never does).
    """

    def __init__(self, rows: list[dict[str, Any]], frame: pd.DataFrame | None = None,
                 matrix: np.ndarray | None = None, names: list[str] | None = None) -> None:
        self.rows = rows
        self.matrix = matrix
        self.names = names
        self._frame = frame
        self.preprocess_ms = 0.0  # building the frame, after the checks

    @property
    def frame(self) -> pd.DataFrame:
        """The DataFrame with pyfunc's dtypes (built on first use)."""
        if self._frame is None:
            t0 = time.perf_counter()
            self._frame = pd.DataFrame(self.matrix, columns=self.names)
            self.preprocess_ms += (time.perf_counter() - t0) * 1e3
        return self._frame


class InputSchema:
    """The column signature of a model, and the parsers that check bodies against it."""

    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields
        self.names = [f.name for f in fields]
        self.by_name = {f.name: f for f in fields}
        self.all_double = all(f.kind == "double" and f.required for f in fields)
        self._name_set = frozenset(self.names)
        # A record's values in signature order, in one C call (a tuple; one column: a list).
        self._values = itemgetter(*self.names) if len(self.names) > 1 else (
            lambda rec: [rec[n] for n in self.names])

    @classmethod
    def from_mlflow(cls, schema: Any) -> InputSchema | None:
        """From an MLflow input schema with named columns; None for tensor or no signature."""
        if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
            return None
        return cls([Field(c.name, getattr(c.type, "name", str(c.type)),
                          bool(getattr(c, "required", True))) for c in schema.inputs])

    def describe(self) -> list[dict[str, Any]]:
        """The columns as JSON (for metadata endpoints and error messages)."""
        return [{"name": f.name, "type": f.kind, "required": f.required} for f in self.fields]

    # -- body shapes ---------------------------------------------------------------
    def records(self, records: Any, where: str = "instances") -> Parsed:
        """``[{"col": value, ...}, ...]``."""
        _check_rows(records, where)
        names, values = self._name_set, self._values
        rows: list[Sequence[Any]] = []
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise InputError(f"{where}[{i}] must be an object of column: value",
                                 row=i)
            if rec.keys() != names:
                self._columns_error(rec.keys(), i)
            rows.append(values(rec))
        return self._build(rows, records)

    def positional(self, rows: Any, where: str = "inputs") -> Parsed:
        """``[[v1, v2, ...], ...]`` in the signature's column order."""
        _check_rows(rows, where)
        n = len(self.names)
        for i, row in enumerate(rows):
            if not isinstance(row, list):
                raise InputError(f"{where}[{i}] must be an array of {n} values in the order "
                                 f"{', '.join(self.names)}", row=i)
            if len(row) != n:
                raise InputError(f"{where}[{i}] has {len(row)} values; the model takes {n} "
                                 f"columns: {', '.join(self.names)}", row=i)
        return self._build(rows, None)

    def columns(self, cols: Any, where: str = "inputs") -> Parsed:
        """``{"col": [values], ...}`` (all columns the same length)."""
        if not isinstance(cols, dict) or not cols:
            raise InputError(f"{where} must be an object of column: [values]")
        self._columns_error(cols.keys(), None, strict_only=True)
        lengths = {len(v) if isinstance(v, list) else -1 for v in cols.values()}
        if -1 in lengths or len(lengths) != 1:
            raise InputError(f"{where}: every column must be an array, all of the same length")
        count = lengths.pop()
        _check_count(count)
        rows = [[cols[k][i] for k in self.names] for i in range(count)]
        return self._build(rows, None)

    def frame(self, df: pd.DataFrame) -> Parsed:
        """A DataFrame parsed from CSV or ``dataframe_split``: same checks, same dtypes."""
        _check_count(len(df))
        self._columns_error([str(c) for c in df.columns], None, strict_only=True)
        # tolist() gives Python scalars (numpy's are not int/float by type)
        cols = [df[c].tolist() for c in self.names]
        return self._build([list(r) for r in zip(*cols, strict=True)], None)

    # -- internals ---------------------------------------------------------------
    def _columns_error(self, keys: Any, row: int | None, strict_only: bool = False) -> None:
        got = list(keys)
        missing = [c for c in self.names if c not in got]
        extra = [c for c in got if c not in self.by_name]
        where = f"row {row}: " if row is not None else ""
        if missing:
            raise InputError(
                f"{where}missing column(s) {', '.join(map(repr, missing[:5]))}"
                f"{' and more' if len(missing) > 5 else ''}; the model takes "
                f"{', '.join(self.names)}", column=missing[0], row=row)
        if extra:
            raise InputError(
                f"{where}unknown column(s) {', '.join(map(repr, extra[:5]))}; the model takes "
                f"only {', '.join(self.names)}", column=str(extra[0]), row=row)
        if len(got) != len(set(got)):
            raise InputError(f"{where}a column is given twice")

    def _build(self, rows: Sequence[Sequence[Any]], received: list[dict[str, Any]] | None
               ) -> Parsed:
        names = self.names
        # Fast path for the common all-numeric signature: one 2-D array, one check pass
        # (bool, str and None are other types: the column checks below name them).
        if self.all_double and set(map(type, chain.from_iterable(rows))) <= _NUMBERS:
            try:
                arr = np.array(rows, dtype=np.float64)
            except OverflowError:  # an integer beyond float64: the column check says so
                arr = np.array([[math.nan]])
            if np.isfinite(arr).all():
                out = received if received is not None else [
                    dict(zip(names, r, strict=True)) for r in rows]
                return Parsed(out, matrix=arr, names=names)
        cols: dict[str, Any] = {}
        for j, f in enumerate(self.fields):
            values = [f.coerce(r[j], i) for i, r in enumerate(rows)]
            dtype = NUMPY_TYPES.get(f.kind, object)
            if dtype in (np.int64, np.int32, np.bool_) and any(v is None or v != v
                                                               for v in values):
                dtype = np.float64  # optional integer column with gaps, as pandas would
            try:
                cols[f.name] = np.array(values, dtype=dtype)
            except OverflowError:
                raise Unprocessable(f"column {f.name!r}: a value is out of range for "
                                    f"{f.kind}", column=f.name) from None
        t0 = time.perf_counter()
        as_received = received if received is not None else [
            dict(zip(names, r, strict=True)) for r in rows]
        parsed = Parsed(as_received, frame=pd.DataFrame(cols, columns=names))
        parsed.preprocess_ms = (time.perf_counter() - t0) * 1e3
        return parsed


_NUMBERS = frozenset((float, int))


def _check_rows(rows: Any, where: str) -> None:
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{where} must be a non-empty array of rows")
    _check_count(len(rows))


def _check_count(count: int) -> None:
    if count == 0:
        raise InputError("send at least one row")
    if count > MAX_ROWS:
        raise TooLarge(f"{count} rows in one request; send at most {MAX_ROWS} per request")


def untyped(rows: list[dict[str, Any]]) -> Parsed:
    """For models without a column signature: the records as a DataFrame, unchecked."""
    _check_count(len(rows))
    try:
        return Parsed(rows, frame=pd.DataFrame.from_records(rows))
    except (TypeError, ValueError) as exc:
        raise InputError(f"the rows do not form a table: {exc}") from None
