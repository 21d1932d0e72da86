"""Recording events from any process: validate, then append to one Redis stream.

An event is *acknowledged* when ``XADD`` returns: from then on the ingest process
(``mlwb.ingest``) will land it in the lake exactly once, whichever process crashes.
No process other than the ingest ever opens a lake file for writing, so there are no
lock errors by construction. See ``docs/architecture.md``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from mlwb import defaults
from mlwb.errors import InputError, StoreError
from mlwb.tables import normalize_row, to_micros


def new_id() -> str:
    """A fresh event id (32 hex characters)."""
    return uuid.uuid4().hex


class EventSink:
    """Appends validated rows to the event stream. Cheap; safe to share across threads."""

    def __init__(self, client: redis.Redis, stream: str = defaults.EVENT_STREAM) -> None:
        self.redis = client
        self.stream = stream

    @staticmethod
    def prepare(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """Fill ``id``/``ts`` and validate; raises InputError naming the bad column.

        Returns the row as sent on the stream: JSON values stay nested (the ingest stores
        them as canonical text once), ``ts`` is epoch microseconds.
        """
        full = dict(row)
        if full.get("id") is None:
            full["id"] = new_id()
        try:
            stamp = full.get("ts")
            full["ts"] = to_micros(datetime.now(UTC) if stamp is None else stamp)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{table}.ts must be an ISO 8601 time, got {full['ts']!r}",
                             table=table, column="ts") from None
        normalize_row(table, full)  # validation only; raises InputError
        return full

    def record(self, table: str, row: Mapping[str, Any]) -> str:
        """Record one row; returns its id once Redis has acknowledged it."""
        return self.record_many(table, [row])[0]

    def record_many(self, table: str, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Record rows of one table in one round trip; all are validated before any is sent."""
        prepared = [self.prepare(table, r) for r in rows]
        return self.send([(table, p) for p in prepared])

    def send(self, items: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Append already prepared ``(table, row)`` pairs in one pipeline."""
        if not items:
            return []
        try:
            pipe = self.redis.pipeline(transaction=False)
            for table, row in items:
                data = json.dumps(row, separators=(",", ":"), default=str)
                pipe.xadd(self.stream, {"t": table, "d": data})
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(
                f"the event stream at Redis is unavailable ({exc}); nothing was recorded, "
                "retry the request",
                stream=self.stream,
            ) from exc
        return [row["id"] for _, row in items]

    def backlog(self) -> int:
        """Stream entries not yet landed by the ingest (an API process's shipment of
        predictions is one entry)."""
        return int(self.redis.xlen(self.stream))
