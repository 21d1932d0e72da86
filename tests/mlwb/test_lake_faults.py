"""The event store against bad entries and failures: one bad entry never stops the store,
never takes good rows with it, and a failed write loses nothing."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import redis

from mlwb import ingest as ingest_module
from mlwb.audit import audit, verify
from mlwb.errors import InputError, StoreError
from mlwb.events import EventSink
from mlwb.ingest import Ingest
from mlwb.lake import Lake
from mlwb.settings import Settings
from mlwb.tables import TABLES, Column, Table, normalize_row, register, to_micros

from .test_lake import drain


def run_ingest(ingest: Ingest) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_shipment_lands_its_good_lines_and_dead_letters_each_bad_one(
        settings: Settings, redis_client: redis.Redis) -> None:
    """A shipment (one entry of spooled lines, as the API's log sends them): a line with
    no table, bad JSON or a row its table refuses is one dead letter; the rest land, a
    line shipped twice lands once, and a batch with more events than its size is split."""
    good = [b'events\t{"id": "s%d", "ts": 1700000000.5, "kind": "k"}' % i for i in range(7)]
    lines = [good[0], b"no table here", good[1], b"events\t{not json", good[2],
             b'events\t{"id": "x", "ts": 1700000000.5, "kind": "k", "nope": 1}', good[0]]
    redis_client.xadd("wb:events", {"lines": b"\n".join(lines) + b"\n"})
    redis_client.xadd("wb:events", {"lines": b"\n".join(good[3:]) + b"\n"})
    empty = redis_client.xadd("wb:events", {"lines": b""}).decode()
    ingest = Ingest(redis_client, settings.lake_dir, batch=1).open()
    try:
        assert ingest.step() == 3  # the first shipment whole, though it exceeds the batch
        assert drain(ingest) == 4
    finally:
        ingest.close()
    lake = Lake(settings.lake_dir)
    assert sorted(r[0] for r in lake.query("SELECT id FROM events")) == [
        f"s{i}" for i in range(7)]
    dead = dict(lake.query("SELECT stream_id, reason FROM dead_letters"))
    assert sorted(sid.partition("/")[2] for sid in dead) == ["", "1", "3", "5"]  # lines
    assert "nope" in next(why for sid, why in dead.items() if sid.endswith("/5"))
    assert empty in dead


def test_a_batch_of_small_entries_then_shipments_stays_bounded(
        settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads are sized by the entries seen so far, and at most MAX_READ entries at once: a
    run of single events followed by large shipments cannot swell one batch."""
    monkeypatch.setattr(ingest_module, "MAX_READ", 4)
    sink = EventSink(redis_client)
    sink.record_many("events", [{"kind": "single"} for _ in range(16)])
    for s in range(40):
        lines = [b'events\t{"id": "s%d-%d", "ts": 1700000000.5, "kind": "k"}' % (s, i)
                 for i in range(50)]
        redis_client.xadd("wb:events", {"lines": b"\n".join(lines) + b"\n"})
    ingest = Ingest(redis_client, settings.lake_dir, batch=100).open()
    try:
        first = ingest.step()
        assert 100 <= first <= 100 + 4 * 50  # unbounded, it took 2,016
        assert first + drain(ingest) == 16 + 40 * 50
    finally:
        ingest.close()


def test_undecodable_entries_are_dead_lettered_and_the_loop_goes_on(
        settings: Settings, redis_client: redis.Redis) -> None:
    """Bytes that are not UTF-8 in the table, a field name or the row; JSON nested deeper
    than any parser goes: each becomes one dead letter, the running ingest keeps going."""
    sink = EventSink(redis_client)
    first = sink.record("events", {"kind": "before"})
    redis_client.xadd("wb:events", {"t": b"ev\xffents", "d": '{"kind": "k"}'})
    redis_client.xadd("wb:events", {b"\xfe": b"x", "t": "events",  # lands: one odd field
                                    "d": '{"id": "odd", "ts": 1700000000.5, "kind": "k"}'})
    redis_client.xadd("wb:events", {"t": "events", "d": "[" * 5000 + "]" * 5000})
    redis_client.xadd("wb:events", {"t": "events"})  # no row at all
    last = sink.record("events", {"kind": "after"})
    ingest = Ingest(redis_client, settings.lake_dir).open()
    thread, stop = run_ingest(ingest)
    lake = Lake(settings.lake_dir)
    try:
        wait_for(lambda: lake.count("events") == 3 and lake.count("dead_letters") == 3)
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(10)
        ingest.close()
    assert sorted(r[0] for r in lake.query("SELECT id FROM events")) == sorted(
        [first, "odd", last])
    reasons = [r[0] for r in lake.query("SELECT reason FROM dead_letters")]
    assert any("nested too deeply" in r for r in reasons)
    assert redis_client.xlen("wb:events") == 0


def test_a_bad_row_is_dead_lettered_alone(settings: Settings, redis_client: redis.Redis) -> None:
    """An id that is not storable text (an unpaired surrogate, as raw JSON allows): that
    entry is dead-lettered, the valid rows of the same batch land."""
    sink = EventSink(redis_client)
    good = sink.record_many("events", [{"kind": f"k{i}"} for i in range(3)])
    redis_client.xadd("wb:events", {"t": "events", "d": '{"id": "\\ud800", "ts": 1700000000.5, '
                                                       '"kind": "k"}'})
    ingest = Ingest(redis_client, settings.lake_dir).open()
    assert drain(ingest) == 3
    ingest.close()
    lake = Lake(settings.lake_dir)
    assert sorted(r[0] for r in lake.query("SELECT id FROM events")) == sorted(good)
    [(raw, reason)] = lake.query("SELECT raw, reason FROM dead_letters")
    assert "unpaired surrogate" in reason and "ud800" in raw


class _NarrowTable(Table):
    """A table whose file column is narrower than what validation allows (int8 for int):
    a value validation takes and Parquet cannot hold."""

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(c.name, pa.int8() if c.type == "int" else f.type)
                          for c, f in zip(self.all_columns, super().arrow_schema, strict=True)])


def test_a_value_parquet_refuses_takes_only_its_own_row(
        settings: Settings, redis_client: redis.Redis) -> None:
    table = register(_NarrowTable("narrow_test", (Column("n", "int"),)))
    try:
        sink = EventSink(redis_client)
        ok = sink.record_many("narrow_test", [{"n": 1}, {"n": 2}])
        bad = sink.record("narrow_test", {"n": 1000})
        ok.append(sink.record("narrow_test", {"n": 3}))
        ingest = Ingest(redis_client, settings.lake_dir).open()
        assert drain(ingest) == 3
        ingest.close()
        lake = Lake(settings.lake_dir)
        assert sorted(r[0] for r in lake.query("SELECT id FROM narrow_test")) == sorted(ok)
        [(raw,)] = lake.query("SELECT raw FROM dead_letters")
        assert json.loads(raw)["id"] == bad
    finally:
        TABLES.pop(table.name)


def test_a_failed_write_is_retried_whole(settings: Settings, redis_client: redis.Redis) -> None:
    """The table's folder cannot be made (a file stands in its way, as a full or read-only
    disk would refuse): nothing is installed, nothing is marked seen; once the way is
    clear, every row lands once."""
    ids = EventSink(redis_client).record_many("events", [{"kind": f"k{i}"} for i in range(5)])
    ingest = Ingest(redis_client, settings.lake_dir).open()
    blocker = settings.lake_dir / "events"
    blocker.write_text("in the way")
    with pytest.raises(OSError):
        ingest.step()
    blocker.unlink()
    assert drain(ingest) == 5
    ingest.close()
    got = Lake(settings.lake_dir).query("SELECT id FROM events")
    assert sorted(r[0] for r in got) == sorted(ids)


def test_the_audit_chain_covers_only_what_landed(
        settings: Settings, redis_client: redis.Redis) -> None:
    sink = EventSink(redis_client)
    audit(sink, "user:1:a", "first")
    redis_client.xadd("wb:events", {"t": "audit", "d": json.dumps(
        {"id": "bad", "ts": 1700000000.5, "actor": "user:1:a", "action": "x",
         "target": "\ud800"})})  # json.dumps writes the escape
    audit(sink, "user:1:a", "second")
    ingest = Ingest(redis_client, settings.lake_dir).open()
    drain(ingest)
    ingest.close()
    lake = Lake(settings.lake_dir)
    assert lake.query("SELECT seq, action FROM audit ORDER BY seq") == [(1, "first"),
                                                                        (2, "second")]
    assert verify(lake, redis_client).ok


def test_record_refuses_what_cannot_be_stored(redis_client: redis.Redis) -> None:
    sink = EventSink(redis_client)
    deep: list = []
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(InputError, match=r"events.payload.*nested too deeply"):
        sink.record("events", {"kind": "k", "payload": deep})
    with pytest.raises(InputError, match=r"events.payload.*too large to show"):
        sink.record("events", {"kind": "k", "payload": 10**5000})
    with pytest.raises(InputError, match=r"events.kind.*unpaired surrogate"):
        sink.record("events", {"kind": "\ud800"})
    with pytest.raises(InputError, match=r"audit.seq.*beyond 64 bits"):
        normalize_row("audit", {"id": "x", "ts": 1700000000.5, "actor": "a", "action": "b",
                                "seq": 2**63})
    with pytest.raises(InputError, match=r"events\.ts"):
        sink.record("events", {"kind": "k", "ts": float("nan")})
    assert redis_client.xlen("wb:events") == 0


def test_times_are_exact_to_the_microsecond() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rng = random.Random(1)
    for _ in range(20_000):
        us = rng.randrange(946_684_800 * 10**6, 4_102_444_800 * 10**6)
        dt = epoch + timedelta(microseconds=us)
        assert to_micros(dt) == us
        assert to_micros(dt.isoformat()) == us
        assert to_micros(us / 1e6) == us


def test_unpaired_surrogates_in_json_are_stored_readable(
        settings: Settings, redis_client: redis.Redis) -> None:
    """JSON text may carry "\\ud800" (json.loads accepts it, so an API body can): the column
    stores U+FFFD in its place, and DuckDB's JSON functions still read every row."""
    sink = EventSink(redis_client)
    sink.record("events", {"kind": "k", "payload": {"name": "a\ud800b", "\udcff": 1}})
    sink.record("events", {"kind": "k", "payload": {"name": "plain"}})
    ingest = Ingest(redis_client, settings.lake_dir).open()
    drain(ingest)
    ingest.close()
    lake = Lake(settings.lake_dir)
    got = lake.query("SELECT payload->>'name' FROM events ORDER BY payload->>'name'")
    assert got == [("a\ufffdb",), ("plain",)]


def test_a_reader_gets_a_store_error_for_a_vanished_file(settings: Settings,
                                                         redis_client: redis.Redis) -> None:
    EventSink(redis_client).record("events", {"kind": "k"})
    ingest = Ingest(redis_client, settings.lake_dir).open()
    drain(ingest)
    ingest.close()
    lake = Lake(settings.lake_dir)
    Path(settings.lake_dir / lake.manifest().files("events")[0]).unlink()
    with pytest.raises(StoreError, match="could not read the lake"):
        lake.query("SELECT count(*) FROM events")
