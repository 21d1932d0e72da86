"""Retention of raw prediction inputs, carried out by the ingest (the lake's only writer).

Two ways in: the `prediction_inputs_days` setting (the ingest blanks older inputs once an
hour), and `wb predictions purge --before DATE`, which asks the running ingest through a
Redis list and waits for its answer (or, with no ingest running, takes the lake's lock and
purges itself). Every purge is audited with what it blanked.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from mlwb.audit import audit
from mlwb.events import EventSink
from mlwb.ingest import Ingest
from mlwb.predictions import purge_inputs

REQUESTS = "wb:ingest:purge-requests"
RESULT = "wb:ingest:purge-result:"
EVERY_SECONDS = 3600.0


def request_purge(client: redis.Redis, before: datetime, actor: str,
                  timeout: float = 120.0) -> int | None:
    """Ask the running ingest to purge; returns rows blanked, or None if it did not answer."""
    request_id = uuid.uuid4().hex
    request = json.dumps({"id": request_id, "before": before.isoformat(), "actor": actor})
    client.rpush(REQUESTS, request)
    answer: Any = client.blpop([RESULT + request_id], timeout=int(timeout))
    if answer is None:
        client.lrem(REQUESTS, 0, request)  # withdraw it if still queued (a late purge is
        # still audited)
        return None
    return int(json.loads(answer[1])["blanked"])


def purge(ingest: Ingest, sink: EventSink, before: datetime, actor: str,
          audit_nothing: bool = True) -> int:
    """Blank inputs before ``before`` under the ingest's lock, and audit it (a pass that
    blanked nothing only if ``audit_nothing``)."""
    blanked = purge_inputs(ingest, before)
    if blanked or audit_nothing:
        audit(sink, actor, "predictions.purged", "table:predictions",
              before={"before": before.isoformat()}, after={"inputs_blanked": blanked})
    return blanked


def ingest_hook(sink: EventSink, keep_days: int) -> Callable[[Ingest], None]:
    """What the ingest runs between batches: answer purge requests; apply retention hourly."""
    last_retention: float | None = None  # None: apply at the first call (monotonic time
    # starts near zero at boot, so "0 seconds" would wait up to an hour on a fresh machine)

    def hook(ingest: Ingest) -> None:
        nonlocal last_retention
        while (raw := ingest.redis.lpop(REQUESTS)) is not None:
            req = json.loads(raw)  # type: ignore[arg-type]
            blanked = purge(ingest, sink, datetime.fromisoformat(req["before"]), req["actor"])
            key = RESULT + req["id"]
            ingest.redis.rpush(key, json.dumps({"blanked": blanked}))
            ingest.redis.expire(key, 600)
        if keep_days > 0 and (last_retention is None
                              or time.monotonic() - last_retention > EVERY_SECONDS):
            last_retention = time.monotonic()
            cutoff = datetime.now(UTC) - timedelta(days=keep_days)
            # A person's purge is always audited; the automatic pass only when it blanked
            # something (an ingest restarting in a loop must not fill the audit log).
            purge(ingest, sink, cutoff, f"system:retention({keep_days}d)", audit_nothing=False)

    return hook
