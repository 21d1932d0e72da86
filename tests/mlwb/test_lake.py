"""The event store: record from any process, one ingest lands rows exactly once."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import redis

import mlwb.ingest
from mlwb import defaults
from mlwb.errors import InputError
from mlwb.events import EventSink
from mlwb.ingest import Ingest, IngestLocked, _arrow, _level
from mlwb.lake import Lake
from mlwb.manifest import read_manifest
from mlwb.settings import Settings
from mlwb.tables import normalize_row


def drain(ingest: Ingest) -> int:
    total = 0
    while (n := ingest.step()) or ingest.redis.xlen(ingest.stream) > 0:
        total += n
        if n == 0:
            break
    return total


def test_record_land_and_read(settings: Settings, redis_client: redis.Redis) -> None:
    sink = EventSink(redis_client)
    ids = sink.record_many("events", [{"kind": "k", "payload": {"i": i}} for i in range(250)])
    ingest = Ingest(redis_client, settings.lake_dir).open()
    assert drain(ingest) == 250
    lake = Lake(settings.lake_dir)
    rows = lake.query("SELECT id, payload FROM events ORDER BY id")
    assert sorted(ids) == [r[0] for r in rows]
    assert lake.count("events") == 250
    # Reading again lands nothing new: the position is in the manifest.
    assert ingest.step() == 0
    ingest.close()


def test_bad_rows_are_refused_at_record_time(redis_client: redis.Redis) -> None:
    sink = EventSink(redis_client)
    with pytest.raises(InputError, match="no column"):
        sink.record("events", {"kind": "x", "colour": "red"})
    with pytest.raises(InputError, match="unknown table"):
        sink.record("nope", {})
    with pytest.raises(InputError, match="required"):
        sink.record("events", {"payload": 1})
    assert redis_client.xlen("wb:events") == 0


def test_restart_after_crash_between_segment_and_manifest(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """Segments written but no manifest installed: the restart sweeps them, lands once."""
    sink = EventSink(redis_client)
    ids = sink.record_many("events", [{"kind": "k"} for _ in range(10)])
    ingest = Ingest(redis_client, settings.lake_dir).open()
    entries = ingest._read(0, count=100)
    # Simulate the crash: write the segment file, but never the manifest.
    orphan = normalize_row("events", EventSink.prepare("events", {"kind": "orphan"}))
    ingest._write_segment("events", _arrow("events", [orphan]), 99)
    ingest.close()
    assert len(entries) == 10
    again = Ingest(redis_client, settings.lake_dir).open()
    assert drain(again) == 10
    got = [r[0] for r in Lake(settings.lake_dir).query("SELECT id FROM events")]
    assert sorted(got) == sorted(ids)
    again.close()


def test_duplicate_ids_land_once(settings: Settings, redis_client: redis.Redis) -> None:
    sink = EventSink(redis_client)
    sink.record("events", {"id": "same", "kind": "k"})
    ingest = Ingest(redis_client, settings.lake_dir).open()
    drain(ingest)
    sink.record("events", {"id": "same", "kind": "k"})
    drain(ingest)
    ingest.close()
    # A restarted ingest remembers recent ids from the lake itself.
    sink.record("events", {"id": "same", "kind": "k"})
    restarted = Ingest(redis_client, settings.lake_dir).open()
    drain(restarted)
    assert Lake(settings.lake_dir).query("SELECT count(*) FROM events") == [(1,)]
    restarted.close()


def test_ids_are_forgotten_after_the_window_and_beyond_the_cap(
        settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repeat is dropped while its id is remembered: for the dedupe window, and while
    no more than the cap of ids is kept (the oldest commits are forgotten first)."""
    sink = EventSink(redis_client)
    ingest = Ingest(redis_client, settings.lake_dir).open()
    monkeypatch.setattr(mlwb.ingest, "DEDUPE_MAX_IDS", 5)

    def land(*ids: str) -> int:
        sink.record_many("events", [{"id": i, "kind": "k"} for i in ids])
        return drain(ingest)

    assert land("a1", "a2", "a3") == 3
    assert land("b1", "b2", "b3") == 3  # 6 ids kept > 5: the a-commit is forgotten
    assert land("a1", "b1") == 1  # a1 lands twice, b1 is still known
    monkeypatch.setattr(mlwb.ingest, "DEDUPE_WINDOW_SECONDS", -1.0)  # every commit is old
    assert land("c1") == 1  # ...forgotten right after this one lands
    assert land("b2", "c1") == 2
    ids = [r[0] for r in Lake(settings.lake_dir).query("SELECT id FROM events ORDER BY id")]
    assert ids == ["a1", "a1", "a2", "a3", "b1", "b2", "b2", "b3", "c1", "c1"]
    ingest.close()


def test_only_one_ingest(settings: Settings, redis_client: redis.Redis) -> None:
    first = Ingest(redis_client, settings.lake_dir).open()
    with pytest.raises(IngestLocked, match="already writing"):
        Ingest(redis_client, settings.lake_dir).open()
    first.close()


def test_compaction_keeps_rows_and_readers(settings: Settings, redis_client: redis.Redis) -> None:
    sink = EventSink(redis_client)
    ingest = Ingest(redis_client, settings.lake_dir).open()
    ids = []
    for i in range(70):
        ids.append(sink.record("events", {"kind": f"k{i}"}))
        ingest.step()
    lake = Lake(settings.lake_dir)
    old_manifest = lake.manifest()
    assert len(old_manifest.files("events")) == 70
    assert ingest.compact() == 1
    m = read_manifest(settings.lake_dir)
    assert len(m.files("events")) == 5
    # A reader pinned to the old manifest still reads (files kept for the grace period).
    con = lake.connect(old_manifest)
    assert con.execute("SELECT count(*) FROM events").fetchone() == (70,)
    con.close()
    assert sorted(r[0] for r in lake.query("SELECT id FROM events")) == sorted(ids)
    assert ingest.collect_garbage(now=10**12) == 66
    assert sorted(r[0] for r in lake.query("SELECT id FROM events")) == sorted(ids)
    assert pq.read_table(settings.lake_dir / m.files("events")[0]).num_rows == 66
    # Fresh segments are written plain; the merged file, compressed (LZ4 while it is
    # below the target size and will be merged again).
    codec = [pq.ParquetFile(settings.lake_dir / f).metadata.row_group(0).column(0).compression
             for f in m.files("events")]
    assert codec == ["LZ4", "UNCOMPRESSED", "UNCOMPRESSED", "UNCOMPRESSED", "UNCOMPRESSED"]
    ingest.close()


def test_compaction_is_tiered(settings: Settings, redis_client: redis.Redis,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh segments merge into level 1, FANOUT of a level into the next: each row is
    rewritten once per level, not at every compaction, and every row stays, once."""
    monkeypatch.setattr(defaults, "COMPACT_AFTER_SEGMENTS", 6)
    monkeypatch.setattr(defaults, "COMPACT_FANOUT", 3)
    sink = EventSink(redis_client)
    # Fresh names are 8 hex digits (which may start with "c"); merges name their level;
    # older merges and a purge's rewrites count as level 1.
    assert [_level(f"events/000000000007-{tail}.parquet") for tail in (
        "c9e01ee8", "0a1b2c3d", "c2-0a1b2c3d", "cc9e01ee8", "p0a1b2c3d")] == [0, 0, 2, 1, 1]
    ingest = Ingest(redis_client, settings.lake_dir).open()
    ids = []
    for i in range(90):
        ids.append(sink.record("events", {"kind": f"k{i}"}))
        ingest.step()  # one fresh segment of one row
        ingest.compact()
    files = [seg.file for seg in ingest.manifest.tables["events"]]
    levels = sorted(_level(f) for f in files)
    assert max(levels) >= 3 and len(files) <= 6 + 2 * max(levels)
    rewritten = sum(pq.read_metadata(settings.lake_dir / g["file"]).num_rows
                    for g in ingest.manifest.garbage)
    assert rewritten <= max(levels) * len(ids)  # merging all each time: 1,848 here
    assert sorted(r[0] for r in Lake(settings.lake_dir).query("SELECT id FROM events")) == \
        sorted(ids)
    ingest.close()


def test_malformed_stream_entry_goes_to_dead_letters(
    settings: Settings, redis_client: redis.Redis
) -> None:
    redis_client.xadd("wb:events", {"t": "events", "d": "{not json"})
    redis_client.xadd("wb:events", {"t": "events", "d": b'{"kind": "\xff\xfe"}'})  # not UTF-8
    EventSink(redis_client).record("events", {"kind": "fine"})
    ingest = Ingest(redis_client, settings.lake_dir).open()
    drain(ingest)
    lake = Lake(settings.lake_dir)
    assert lake.query("SELECT count(*) FROM events") == [(1,)]
    assert lake.query("SELECT count(*) FROM dead_letters") == [(2,)]
    ingest.close()


def test_one_poisoned_entry_never_stops_the_store(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """Entries that bypass validation (raw XADD) are dead-lettered; the rest still land."""
    import json

    redis_client.xadd("wb:events", {"t": "events", "d": json.dumps(
        {"id": "poison", "ts": 10**20, "kind": "k"})})
    redis_client.xadd("wb:events", {"t": "nope", "d": "{}"})
    good = EventSink(redis_client).record("events", {"kind": "fine"})
    ingest = Ingest(redis_client, settings.lake_dir).open()
    drain(ingest)
    ingest.close()
    lake = Lake(settings.lake_dir)
    assert lake.query("SELECT id FROM events") == [(good,)]
    assert lake.query("SELECT count(*) FROM dead_letters") == [(2,)]
    assert redis_client.xlen("wb:events") == 0
