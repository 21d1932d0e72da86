"""Compaction under load: merges wait while the host is busy (up to a cap of segments), and
one merge holds about the target's rows however many segments waited."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import redis

from mlwb import defaults
from mlwb.events import EventSink
from mlwb.hostload import HostLoad
from mlwb.ingest import Ingest, _level
from mlwb.lake import Lake
from mlwb.settings import Settings


def _segments(ingest: Ingest, sink: EventSink, n: int, ids: list[str]) -> None:
    for i in range(n):
        ids.append(sink.record("events", {"kind": f"k{i}"}))
        ingest.step()  # one fresh segment of one row


def _ingest_with(settings: Settings, redis_client: redis.Redis, n: int
                 ) -> tuple[Ingest, EventSink, list[str]]:
    """An ingest whose lake holds ``n`` single-row segments of ``events``; their ids."""
    sink = EventSink(redis_client)
    ingest = Ingest(redis_client, settings.lake_dir).open()
    ids: list[str] = []
    _segments(ingest, sink, n, ids)
    return ingest, sink, ids


def _landed_ids(settings: Settings) -> list[str]:
    return sorted(r[0] for r in Lake(settings.lake_dir).query("SELECT id FROM events"))


def test_the_rest_of_the_hosts_load_is_measured() -> None:
    load = HostLoad()
    assert load.others_busy() is None  # nothing to compare with yet
    spin = subprocess.Popen([sys.executable, "-c",
                             "import time\nend = time.time() + 1.0\nwhile time.time() < end: pass"])
    spin.wait()
    busy = load.others_busy()
    assert busy is not None
    # One core spun for most of the interval, out of all the host's cores (others may add).
    assert 0.4 / (os.cpu_count() or 1) <= busy <= 1.0


def test_merges_wait_while_the_host_is_busy_up_to_a_cap(
        settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "COMPACT_AFTER_SEGMENTS", 6)
    monkeypatch.setattr(defaults, "COMPACT_MAX_SEGMENTS", 12)
    ingest, sink, ids = _ingest_with(settings, redis_client, 10)
    # Any load at all counts as busy: the real /proc/stat reading, a threshold of zero.
    monkeypatch.setattr(defaults, "COMPACT_BUSY", 0.0)
    ingest.load.others_busy()  # the first reading
    time.sleep(0.2)  # the host's times advance in ticks of 10 ms
    ingest.maintain()
    assert len(ingest.manifest.tables["events"]) == 10  # waited
    assert ingest.deferred == 1
    _segments(ingest, sink, 2, ids)
    time.sleep(0.2)
    ingest.maintain()  # at the cap: compacted though the host is "busy"
    assert len(ingest.manifest.tables["events"]) == 5
    assert ingest.deferred == 1
    # A host that is never busy enough: compacted as soon as there are too many.
    monkeypatch.setattr(defaults, "COMPACT_BUSY", 1.01)
    _segments(ingest, sink, 3, ids)
    ingest.maintain()  # the 3 older fresh ones merged: two of level 1, the 4 newest
    assert len(ingest.manifest.tables["events"]) == 6
    assert ingest.deferred == 1
    assert _landed_ids(settings) == sorted(ids)
    ingest.close()


def test_a_merge_holds_about_the_target_rows_however_many_waited(
        settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "COMPACT_AFTER_SEGMENTS", 6)
    monkeypatch.setattr(defaults, "COMPACT_TARGET_ROWS", 5)
    ingest, _, ids = _ingest_with(settings, redis_client, 27)
    assert ingest.compact() == 1
    segments = ingest.manifest.tables["events"]
    merged = [s for s in segments if _level(s.file) > 0]
    # 23 older single-row segments: four merges of 5 (final), the 3 left as one of level 1.
    assert sorted(s.rows for s in merged) == [3, 5, 5, 5, 5]
    codecs = {s.rows: pq.ParquetFile(settings.lake_dir / s.file).metadata.row_group(0)
              .column(0).compression for s in merged}
    assert codecs == {5: "ZSTD", 3: "LZ4"}  # final segments zstd; one merged again, LZ4
    assert _landed_ids(settings) == sorted(ids)
    ingest.close()


def test_segments_are_encoded_per_column(settings: Settings, redis_client: redis.Redis) -> None:
    """A dictionary only for repeating text, statistics for all but JSON text; readers see
    the same rows."""
    sink = EventSink(redis_client)
    ingest = Ingest(redis_client, settings.lake_dir).open()
    ids = [sink.record("events", {"kind": "k", "payload": {"x": i}}) for i in range(3)]
    ingest.step()
    seg = ingest.manifest.tables["events"][0]
    group = pq.ParquetFile(settings.lake_dir / seg.file).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert [n for n, c in columns.items() if c.has_dictionary_page] == ["kind", "source", "actor"]
    assert [n for n, c in columns.items() if not c.is_stats_set] == ["payload"]
    rows = Lake(settings.lake_dir).query("SELECT id, payload->>'x' FROM events ORDER BY 2")
    assert rows == [(i, str(n)) for n, i in enumerate(ids)]
    ingest.close()
