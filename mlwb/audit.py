"""The audit log: every state change and auth event, append-only, hash-chained.

Any process appends an entry with :func:`audit` (through the event stream); the ingest,
the single writer, numbers and chains it. :func:`verify` recomputes the chain and compares
its end with the heads kept outside the table (lake manifest, Redis).
"""

from __future__ import annotations

import json
from typing import Any

import redis

from mlwb.audit_chain import CONFLICT_KEY, HEAD_KEY, ChainReport, verify_chain
from mlwb.events import EventSink
from mlwb.lake import Lake


def audit(
    sink: EventSink,
    actor: str,
    action: str,
    target: str | None = None,
    before: Any = None,
    after: Any = None,
    ip: str | None = None,
) -> str:
    """Append one audit entry; ``actor`` is ``user:ID:NAME`` or ``token:ID`` (never a secret)."""
    return sink.record(
        "audit",
        {"actor": actor, "action": action, "target": target, "before": before,
         "after": after, "ip": ip},
    )


def read_audit(
    lake: Lake, limit: int = 50, action: str | None = None, actor: str | None = None
) -> list[dict[str, Any]]:
    """The newest entries first, optionally filtered by action prefix or actor substring."""
    where, params = [], []
    if action:
        where.append("action LIKE ?")
        params.append(action + "%")
    if actor:
        where.append("actor LIKE ?")
        params.append(f"%{actor}%")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    df = lake.df(
        f"SELECT seq, ts, actor, action, target, before, after, ip FROM audit {clause} "
        f"ORDER BY seq DESC LIMIT {int(limit)}",
        params,
    )
    rows = df.to_dict("records")
    for r in rows:
        for k in ("before", "after"):
            r[k] = json.loads(r[k]) if isinstance(r[k], str) else None
    return rows


def verify(lake: Lake, client: redis.Redis | None = None) -> ChainReport:
    """Recompute the chain over the whole table and compare it with the kept heads.

    Redis is read first: the ingest installs a manifest and then publishes its head, so the
    head read first may lag the manifest read after, never lead it.
    """
    raw_head: Any = client.get(HEAD_KEY) if client is not None else None
    conflicts: Any = client.lrange(CONFLICT_KEY, 0, -1) if client is not None else []
    manifest = lake.manifest()
    con = lake.connect(manifest)
    try:
        cur = con.execute(
            "SELECT seq, id, epoch_us(ts) AS ts, actor, action, target, before, after, ip, "
            "prev_hash, hash FROM audit ORDER BY seq"
        )
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
    trailing: dict[str, tuple[int, str] | None] = {}
    if client is not None:
        trailing["Redis"] = tuple(json.loads(raw_head)) if raw_head else None  # type: ignore[assignment]
    report = verify_chain(rows, {"the lake manifest": (manifest.audit_seq, manifest.audit_hash)},
                          trailing)
    for conflict in conflicts:
        report.problems.append(
            f"an ingest found Redis holding head {conflict!r} that is not on the lake's chain "
            "(the lake was rewritten while the ingest was stopped)")
    return report
