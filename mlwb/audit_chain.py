"""The audit log's hash chain: how an entry's hash is computed, and how the chain is checked.

The ingest (the single writer) assigns each audit entry the next ``seq`` and
``hash = sha256(prev_hash | canonical entry)``. The head (last seq and hash) is kept in
the lake manifest and in Redis, outside the audit table, so that deleting the newest
entries is as evident as editing, deleting or reordering older ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from mlwb.tables import canonical_json

HASHED_FIELDS = ("seq", "id", "ts", "actor", "action", "target", "before", "after", "ip")
HEAD_KEY = "wb:audit:head"
# Heads found in Redis that disagreed with the lake when an ingest started: evidence, kept.
CONFLICT_KEY = "wb:audit:head:conflicts"


def entry_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """The chained hash of one stored audit row (``ts`` in epoch microseconds)."""
    body = canonical_json({k: row.get(k) for k in HASHED_FIELDS})
    return hashlib.sha256(f"{prev_hash}|{body}".encode()).hexdigest()


@dataclass
class ChainReport:
    """What ``wb audit verify`` found."""

    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the chain is intact and matches every kept head."""
        return not self.problems


def verify_chain(
    rows: list[dict[str, Any]],
    exact_heads: dict[str, tuple[int, str]],
    trailing_heads: dict[str, tuple[int, str] | None] | None = None,
) -> ChainReport:
    """Check rows (sorted by seq, ``ts`` in epoch µs) against the chain rule and the heads.

    ``exact_heads`` must equal the last entry (the manifest the rows were read from).
    ``trailing_heads`` may lag behind (Redis is updated just after the manifest) but must be
    an entry of the chain; ``None`` there means the kept head is missing.
    """
    report = ChainReport(entries=len(rows))
    prev_hash = ""
    expected_seq = 1
    by_seq: dict[int, str] = {}
    for row in rows:
        seq = row["seq"]
        if seq != expected_seq:
            report.problems.append(
                f"entry seq {seq} found where seq {expected_seq} was expected "
                "(an entry was deleted or reordered)"
            )
        if row["prev_hash"] != prev_hash:
            report.problems.append(f"entry seq {seq} does not link to the entry before it")
        if entry_hash(row["prev_hash"] or "", row) != row["hash"]:
            report.problems.append(f"entry seq {seq} was edited (its hash does not match)")
        by_seq[seq] = row["hash"]
        prev_hash = row["hash"]
        expected_seq = seq + 1
    last = (rows[-1]["seq"], rows[-1]["hash"]) if rows else (0, "")
    for where, exact in exact_heads.items():
        if tuple(exact) != last:
            report.problems.append(
                f"the chain head kept in {where} is seq {exact[0]}, but the table ends at seq "
                f"{last[0]} (entries were deleted or appended outside the writer)"
            )
    for where, head in (trailing_heads or {}).items():
        if head is None:
            if rows:
                report.problems.append(
                    f"the chain head kept in {where} is missing (it was deleted, or {where} "
                    "lost its data)")
            continue
        seq, digest = head
        if seq > last[0]:
            report.problems.append(
                f"the chain head kept in {where} is seq {seq}, past the table's end at seq "
                f"{last[0]} (the newest entries were deleted)")
        elif seq > 0 and by_seq.get(seq) != digest:
            report.problems.append(
                f"the chain head kept in {where} (seq {seq}) does not match that entry "
                "(the log was rewritten)")
    return report
