"""The audit chain: any edit, deletion or reordering is evident to `wb audit verify`."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mlwb.audit import audit, read_audit, verify
from mlwb.services import Services
from tests.factories import land


@pytest.fixture
def chained(services: Services) -> Path:
    """Five audit entries landed in one segment; returns that segment's path."""
    for i in range(5):
        audit(services.sink, "user:1:alice", f"thing.done.{i}", f"thing:{i}",
              before={"n": i}, after={"n": i + 1})
    land(services)
    files = services.lake.manifest().files("audit")
    assert len(files) == 1
    return services.settings.lake_dir / files[0]


def rewrite(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path)


def test_intact_chain_verifies(services: Services, chained: Path) -> None:
    report = verify(services.lake, services.redis)
    assert report.ok, report.problems
    assert report.entries == 5
    newest = read_audit(services.lake, limit=2)
    assert [r["seq"] for r in newest] == [5, 4]
    assert newest[0]["after"] == {"n": 5}


def test_edited_entry_is_detected(services: Services, chained: Path) -> None:
    t = pq.read_table(chained)
    actors = t.column("actor").to_pylist()
    actors[2] = "user:2:mallory"
    rewrite(chained, t.set_column(t.schema.get_field_index("actor"), "actor",
                                  pa.array(actors)))
    report = verify(services.lake, services.redis)
    assert not report.ok
    assert any("seq 3 was edited" in p for p in report.problems)


def test_deleted_entry_is_detected(services: Services, chained: Path) -> None:
    t = pq.read_table(chained)
    rewrite(chained, t.filter(pc.not_equal(t.column("seq"), 2)))
    report = verify(services.lake, services.redis)
    assert any("deleted or reordered" in p for p in report.problems)


def test_reordered_entries_are_detected(services: Services, chained: Path) -> None:
    t = pq.read_table(chained)
    seqs = t.column("seq").to_pylist()
    seqs[1], seqs[2] = seqs[2], seqs[1]
    rewrite(chained, t.set_column(t.schema.get_field_index("seq"), "seq",
                                  pa.array(seqs, pa.int64())))
    assert not verify(services.lake, services.redis).ok


def test_truncated_tail_is_detected_by_the_heads(services: Services, chained: Path) -> None:
    t = pq.read_table(chained)
    rewrite(chained, t.filter(pc.less(t.column("seq"), 5)))
    report = verify(services.lake, services.redis)
    assert any("head kept in Redis" in p for p in report.problems)
    assert any("head kept in the lake manifest" in p for p in report.problems)


def test_chain_continues_across_ingest_restarts(services: Services) -> None:
    audit(services.sink, "a", "one")
    land(services)
    audit(services.sink, "a", "two")
    land(services)
    report = verify(services.lake, services.redis)
    assert report.ok and report.entries == 2


def test_a_head_lagging_in_redis_is_normal_but_a_missing_one_is_not(
    services: Services, chained: Path
) -> None:
    """The ingest can die between installing the manifest and publishing the head."""
    import json

    from mlwb.audit_chain import CONFLICT_KEY, HEAD_KEY
    from mlwb.ingest import Ingest

    rows = pq.read_table(chained).to_pylist()
    third = next(r for r in rows if r["seq"] == 3)
    services.redis.set(HEAD_KEY, json.dumps([3, third["hash"]]))
    assert verify(services.lake, services.redis).ok
    # A restarted ingest treats the lagging head as a crash, not as tampering.
    Ingest(services.redis, services.settings.lake_dir).open().close()
    assert services.redis.llen(CONFLICT_KEY) == 0
    assert verify(services.lake, services.redis).ok
    services.redis.delete(HEAD_KEY)
    report = verify(services.lake, services.redis)
    assert any("Redis is missing" in p for p in report.problems)


def test_a_forged_head_is_kept_as_evidence(services: Services, chained: Path) -> None:
    import json

    from mlwb.audit_chain import CONFLICT_KEY, HEAD_KEY
    from mlwb.ingest import Ingest

    services.redis.set(HEAD_KEY, json.dumps([3, "0" * 64]))
    Ingest(services.redis, services.settings.lake_dir).open().close()
    assert services.redis.llen(CONFLICT_KEY) == 1
    assert not verify(services.lake, services.redis).ok
