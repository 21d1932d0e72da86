"""The ingest: the single writer of the lake.

Loop: read a batch from the event stream after the last landed position, drop ids seen
recently (client retries), chain audit entries, write one Parquet segment per table
(fsync + rename), then install a new manifest that lists the segments *and* the stream
position. Only after that is the stream trimmed. A crash at any point either leaves the
old manifest (the batch is read again; half-written segments are swept) or the new one
(the batch is not read again): every acknowledged event lands exactly once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis

from mlwb import columnar, defaults, fastjson
from mlwb.audit_chain import CONFLICT_KEY, HEAD_KEY, entry_hash
from mlwb.errors import ConfigError, InputError
from mlwb.hostload import HostLoad
from mlwb.manifest import (
    Manifest,
    Segment,
    fsync_dir,
    read_manifest,
    write_manifest,
    write_parquet,
)
from mlwb.tables import TABLES, normalize_row

log = logging.getLogger(__name__)

DEDUPE_WINDOW_SECONDS = defaults.DEDUPE_WINDOW_SECONDS
DEDUPE_MAX_IDS = defaults.DEDUPE_MAX_IDS
FIRST_READ = 16  # entries in a batch's first read (then sized by what it held)
MAX_READ = 64  # entries in one read at most (a shipment holds up to 500 events)
GATHER = 0.8  # of the flush interval, spent letting a batch gather (the rest lands it)


def dedupe_key(table: str, row: dict[str, Any]) -> str:
    """Ids are unique per table and per caller: one client cannot shadow another's event."""
    return _key(table, row.get("actor"), row["id"])


def _key(table: str, actor: str | None, row_id: str) -> str:
    return f"{table}\x00{actor or ''}\x00{row_id}"


def use_jemalloc() -> str:
    """Give this process's Arrow memory to jemalloc where the pyarrow wheel has it (the
    Linux wheels do); returns the allocator in use. The ingest allocates and frees
    megabytes of Arrow buffers every flush and every merge. With the default mimalloc each
    fresh page costs setup again: reading a just-written segment took 2.4-3.1 us of CPU per
    prediction row the first time and 0.55 the second, against 0.77 with jemalloc, and a
    steady stream of merges cost 2.5 us per landed row against 1.0 (in process)."""
    with contextlib.suppress(NotImplementedError):  # a build without it keeps its default
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    return str(pa.default_memory_pool().backend_name)


class IngestLocked(ConfigError):
    """Another ingest process already owns this lake."""


class _Unwritable(Exception):
    """Some row of a segment holds a value Parquet cannot store."""


_CONVERSION_ERRORS = (pa.ArrowException, OverflowError, ValueError, TypeError)


def _field(fields: dict[Any, Any], name: str) -> bytes:
    """A stream entry's field as bytes (clients with and without decoded responses)."""
    value = fields.get(name.encode(), fields.get(name))
    if value is None:
        raise InputError(f"the stream entry has no {name!r} field")
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)


def _events(sid: str, fields: dict[Any, Any]) -> list[tuple[str, dict[Any, Any]]]:
    """The events of a stream entry, each with the id its dead letter would carry. An entry
    is one event (``t``, ``d``) or a shipment of spooled ones (``lines``: ``table<TAB>json``
    lines, see :mod:`api.serving.shipper`), which lands whole in one manifest like any
    entry; a line without a table becomes a dead letter of its own."""
    blob = _shipment(fields)
    if blob is None:
        return [(sid, fields)]
    lines = blob.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the end of the last line
    if not lines:
        return [(sid, fields)]  # nothing in it: a dead letter
    events = []
    for i, line in enumerate(lines):
        table, tab, data = line.partition(b"\t")
        events.append((f"{sid}/{i}", {b"t": table, b"d": data} if tab else {b"line": line}))
    return events


def _shipment(fields: dict[Any, Any]) -> bytes | None:
    """The lines of a shipment entry as bytes; None for an entry of one event."""
    blob = fields.get(b"lines", fields.get("lines"))
    return blob.encode("utf-8", "surrogatepass") if isinstance(blob, str) else blob


def _size(fields: dict[Any, Any]) -> int:
    """How many events an entry holds (at least one: an empty shipment is a dead letter)."""
    blob = _shipment(fields)
    if blob is None:
        return 1
    # numpy's count is vectorised: a third of the CPU of bytes.count on a 60 KB shipment
    return max(1, int(np.count_nonzero(np.frombuffer(blob, np.uint8) == 0x0A)))


def _level(file: str) -> int:
    """A segment's compaction level from its name: 0 for a fresh one (``V-xxxxxxxx``), n
    for a merge (``V-cn-xxxxxxxx``); 1 for other rewrites (older merges ``V-cxxxxxxxx``, a
    purge's ``V-pxxxxxxxx``)."""
    parts = file.rsplit("/", 1)[-1].removesuffix(".parquet").split("-")
    if len(parts) == 2:
        return 0 if len(parts[1]) == 8 else 1
    tier = parts[1][1:]
    return int(tier) if parts[1].startswith("c") and tier.isdigit() else 1


def _up_to_target(same: list[Segment]) -> list[Segment]:
    """The first of ``same`` until they hold ``COMPACT_TARGET_ROWS`` rows (at least two)."""
    total = 0
    for i, seg in enumerate(same):
        total += seg.rows
        if total >= defaults.COMPACT_TARGET_ROWS:
            return same[:max(i + 1, 2)]
    return same


def _text(value: Any) -> str:
    """Printable, storable text for a dead letter (escapes what UTF-8 cannot hold)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    return str(value).encode("utf-8", "backslashreplace").decode()


def _plain(value: Any) -> Any:
    """A value ``json.dumps`` can always write: numbers and flags as they are, an integer
    beyond 64 bits or anything else as text."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else f"<an integer of {value.bit_length()} bits>"
    return _text(value)


def _dead_letter(sid: str, raw: dict[Any, Any], exc: BaseException, now: float
                 ) -> dict[str, Any]:
    """The dead_letters row keeping an entry (or row) that could not be stored, and why."""
    kept = {_text(k): _plain(v) for k, v in raw.items()}
    return normalize_row("dead_letters", {
        "id": f"dl-{sid}", "ts": now, "stream_id": sid,
        "raw": json.dumps(kept, default=str)[:100_000],
        "reason": _text(f"{type(exc).__name__}: {exc}")[:2000]})


def _arrow(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Normalized rows of ``table`` as Arrow; ``_Unwritable`` if Parquet cannot hold one."""
    spec = TABLES[table]
    try:
        return pa.table({c.name: [r[c.name] for r in rows] for c in spec.all_columns},
                        schema=spec.arrow_schema)
    except _CONVERSION_ERRORS as exc:
        raise _Unwritable(str(exc)) from exc


def _rows_of(table: str, columns: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Rows from columns, each with the id its dead letter would carry."""
    return [(f"{table}/{row['id']}", row)
            for row in (dict(zip(columns, values, strict=True))
                        for values in zip(*columns.values(), strict=True))]


def _chain(table: str, items: list[tuple[str, dict[str, Any]]], seq: int, head: str
           ) -> list[dict[str, Any]]:
    """The rows of ``items``; audit rows numbered and hash-chained after ``(seq, head)``."""
    rows = [row for _, row in items]
    if table == "audit":
        for row in rows:
            seq += 1
            row["seq"], row["prev_hash"] = seq, head
            row["hash"] = head = entry_hash(head, row)
    return rows


class Ingest:
    """Drains the event stream into the lake. One per lake (guarded by a file lock)."""

    def __init__(
        self,
        client: redis.Redis,
        lake_dir: Path,
        stream: str = defaults.EVENT_STREAM,
        batch: int = defaults.INGEST_BATCH,
        flush_seconds: float = defaults.INGEST_FLUSH_SECONDS,
    ) -> None:
        self.redis = client
        self.lake_dir = Path(lake_dir)
        self.stream = stream
        self.batch = batch
        self.flush_seconds = flush_seconds
        self._lock_fh: Any = None
        # Work that must run under the lake's lock (retention, purges), between batches.
        self.hooks: list[Callable[[Ingest], None]] = []
        # Ids landed in the dedupe window, and when, one generation per commit (a set and
        # a queue of whole commits: a third of the CPU of one ordered entry per id).
        self._seen: set[str] = set()
        self._generations: deque[tuple[float, list[str]]] = deque()
        self._new_folder = False  # a table's folder was made since the last commit began
        self.columnar_rows = 0  # rows read from shipments column-wise (tests, benchmarks)
        self.manifest = Manifest()
        self.load = HostLoad()  # what merges wait for (maintain)
        self.deferred = 0  # maintenance passes whose merges waited for a busy host

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> Ingest:
        """Take the lake's lock, sweep half-written files, and load recent ids."""
        self.lake_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.lake_dir / "ingest.lock", "a+")
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IngestLocked(
                f"another ingest process is already writing {self.lake_dir}; run only one "
                "(`wb up` and docker-compose start exactly one)",
                lake=str(self.lake_dir),
            ) from exc
        self._lock_fh.seek(0)
        self._lock_fh.truncate()
        self._lock_fh.write(str(os.getpid()))
        self._lock_fh.flush()
        self.manifest = read_manifest(self.lake_dir)
        fsync_dir(self.lake_dir)  # folders a crashed predecessor made are durable from here
        self._sweep_orphans()
        self._load_recent_ids()
        self._check_head()
        self._publish_head()
        return self

    def close(self) -> None:
        """Release the lock."""
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def run(self, stop: threading.Event | None = None) -> None:
        """Ingest until ``stop`` is set (or forever)."""
        stop = stop or threading.Event()
        last_compact = time.monotonic()
        while not stop.is_set():
            try:
                landed = self.step(block_ms=int(self.flush_seconds * 1000))
                for hook in self.hooks:
                    hook(self)
                if time.monotonic() - last_compact > 10:
                    last_compact = time.monotonic()
                    self.maintain()
                if landed == 0 and stop.wait(0.01):
                    break
            except redis.RedisError as exc:
                log.warning("ingest: redis unavailable (%s); retrying in 1s", exc)
                stop.wait(1.0)
            except OSError as exc:  # disk full, permissions: nothing is lost, retry slowly
                log.error("ingest: could not write the lake (%s); retrying in 5s", exc)
                with contextlib.suppress(OSError):  # else swept at the next start
                    self._sweep_orphans()  # segments of the batch that was not installed
                stop.wait(5.0)

    def maintain(self) -> None:
        """Compaction and garbage collection. A failure leaves the installed manifest as it
        was (the merge is retried next time) and never stops the ingest.

        While the rest of the host kept its CPUs busy since the last pass
        (``COMPACT_BUSY``), merges wait, up to ``COMPACT_MAX_SEGMENTS`` segments per table:
        requests first, maintenance in the gaps. Readers see more, smaller files meanwhile.
        """
        busy = self.load.others_busy()
        defer = busy is not None and busy >= defaults.COMPACT_BUSY
        try:
            if self.compact(defer=defer) == 0 and defer and self._would_compact():
                self.deferred += 1
            self.collect_garbage()
        except redis.RedisError:
            raise
        except Exception:
            log.exception("ingest: compaction failed; the segments stay as they are")

    # -- one cycle -------------------------------------------------------------------
    def step(self, block_ms: int = 0) -> int:
        """Read one batch and land it; returns the number of rows landed.

        With ``block_ms`` (the running ingest), once the first entry arrives it keeps
        collecting for most of a flush interval (``GATHER``), so that entry still lands
        within the interval: a trickle of events lands as one segment per interval, not one
        tiny segment (and fsyncs, and manifest) per event, and under load a batch's fixed
        cost (5-7 ms of CPU) is shared by more rows. Without it (drains, tests) it takes
        only what is already there.
        """
        first = min(FIRST_READ, self.batch)
        entries = self._read(block_ms, count=first)
        if not entries:
            return 0
        if block_ms and len(entries) < first:
            # Let the batch gather, then take it in as few reads as possible (each read
            # costs more CPU than the events it carries when they trickle in one by one).
            time.sleep(self.flush_seconds * GATHER)
        events = sum(_size(fields) for _, fields in entries)
        while events < self.batch:
            # As many entries as the batch has room for at the size seen so far, and never
            # more than MAX_READ at once: an entry can be a shipment of up to the shipper's
            # MAX_LINES events, so a step holds at most batch + MAX_READ shipments' worth.
            room = (self.batch - events) * len(entries) // events
            more = self._read(0, after=entries[-1][0], count=max(1, min(room, MAX_READ)))
            if not more:
                break
            entries.extend(more)
            events += sum(_size(fields) for _, fields in more)
        return self._commit(entries)

    def _read(self, block_ms: int, after: str | None = None, count: int = 1
              ) -> list[tuple[str, dict[Any, Any]]]:
        """Up to ``count`` entries after ``after`` (else the landed position), their fields
        as Redis gave them: decoding is part of landing an entry, where a bad one is
        dead-lettered."""
        kwargs: dict[str, Any] = {"count": count}
        if block_ms:
            kwargs["block"] = block_ms
        resp: Any = self.redis.xread({self.stream: after or self.manifest.last_id}, **kwargs)
        if not resp:
            return []
        return [(sid.decode() if isinstance(sid, bytes) else sid, fields)
                for sid, fields in resp[0][1]]

    def _commit(self, entries: list[tuple[str, dict[Any, Any]]]) -> int:
        """Land ``entries`` as one manifest version. An entry that cannot be stored (bad
        JSON or encoding, unknown table, a row its table refuses, a value Parquet cannot
        hold) becomes a ``dead_letters`` row on its own; the rest land. Nothing is marked
        as seen before the manifest that holds it is installed, so a failed write (a full
        disk) is retried whole."""
        now = time.time()
        by_table: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        chunks: dict[str, dict[str, list[Any]]] = {}  # shipments' rows, column-wise
        dead: list[dict[str, Any]] = []
        fresh: dict[str, float] = {}
        for entry_id, entry in entries:
            whole = self._columnar(entry, now, fresh)
            if whole is not None:
                table, columns = whole
                into = chunks.setdefault(table, {})
                for column, values in columns.items():
                    into.setdefault(column, []).extend(values)
                continue
            for sid, fields in _events(entry_id, entry):
                try:
                    table = _field(fields, "t").decode()
                    row = normalize_row(table, fastjson.loads(_field(fields, "d")))
                except (InputError, ValueError, TypeError) as exc:
                    dead.append(_dead_letter(sid, fields, exc, now))
                    continue
                key = dedupe_key(table, row)
                if key in self._seen or key in fresh:
                    continue
                fresh[key] = now
                by_table[table].append((sid, row))

        version = self.manifest.version + 1
        self._new_folder = False
        tables = {t: list(s) for t, s in self.manifest.tables.items()}
        seq, head = self.manifest.audit_seq, self.manifest.audit_hash
        landed = 0
        for table in dict.fromkeys([*chunks, *by_table]):
            parts = []
            items = by_table.get(table, [])
            if table in chunks:
                try:
                    parts.append(columnar.arrow(table, chunks[table]))
                except _CONVERSION_ERRORS:  # not seen: columnar.land checks every value
                    items = [*_rows_of(table, columnar.plain(table, chunks[table])), *items]
            if items:
                try:
                    parts.append(_arrow(table, _chain(table, items, seq, head)))
                except _Unwritable:
                    # Find the rows Parquet refuses, one by one (only on this rare path).
                    good = []
                    for sid, row in items:
                        try:
                            pa.Table.from_pylist([row], schema=TABLES[table].arrow_schema)
                            good.append((sid, row))
                        except _CONVERSION_ERRORS as exc:
                            log.error("ingest: a %s row could not be written (%s); "
                                      "dead-lettered", table, exc)
                            dead.append(_dead_letter(sid, row, exc, now))
                            fresh.pop(dedupe_key(table, row), None)
                    items = good
                    if items:
                        parts.append(_arrow(table, _chain(table, items, seq, head)))
                if items and table == "audit":  # the chain covers exactly what landed
                    seq, head = items[-1][1]["seq"], items[-1][1]["hash"]
            parts = [part for part in parts if part.num_rows]  # all seen before: no segment
            if not parts:
                continue
            data = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
            tables.setdefault(table, []).append(self._write_segment(table, data, version))
            landed += data.num_rows
        if dead:
            segment = self._write_segment("dead_letters", _arrow("dead_letters", dead), version)
            tables.setdefault("dead_letters", []).append(segment)
        if self._new_folder:  # its entry in the lake's folder, before a manifest names it
            fsync_dir(self.lake_dir)
        new = Manifest(version=version, last_id=entries[-1][0], audit_seq=seq, audit_hash=head,
                       tables=tables, garbage=list(self.manifest.garbage))
        write_manifest(self.lake_dir, new)
        self.manifest = new
        self._remember(list(fresh), now)
        self._publish_head()
        # Safe now: everything up to last_id is in the manifest. MINID drops ids *below* it,
        # so trim below the next possible id: the stream then holds only the backlog.
        ms, sub = new.last_id.split("-")
        self.redis.xtrim(self.stream, minid=f"{ms}-{int(sub) + 1}", approximate=False)
        self._forget_old_ids(now)
        return landed

    def _columnar(self, entry: dict[Any, Any], now: float, fresh: dict[str, float]
                  ) -> tuple[str, dict[str, Sequence[Any]]] | None:
        """A shipment's rows column-wise (:mod:`mlwb.columnar`), less those seen before;
        None when it must land row by row."""
        blob = _shipment(entry)
        found = columnar.split(blob) if blob else None
        columns = columnar.land(*found) if found else None
        if columns is None:
            return None
        table = found[0]  # type: ignore[index]
        ids = columns["id"]
        actors = columns.get("actor") or [None] * len(ids)
        keys = [_key(table, a, i) for i, a in zip(ids, actors, strict=True)]
        self.columnar_rows += len(keys)
        if (len(set(keys)) == len(keys) and self._seen.isdisjoint(keys)
                and fresh.keys().isdisjoint(keys)):  # all new
            fresh.update(dict.fromkeys(keys, now))
            return table, columns
        keep = []
        for key in keys:
            new = key not in self._seen and key not in fresh
            if new:
                fresh[key] = now
            keep.append(new)
        return table, {name: list(compress(values, keep)) for name, values in columns.items()}

    def _write_segment(self, table: str, data: pa.Table, version: int) -> Segment:
        folder = self.lake_dir / table
        if not folder.is_dir():
            folder.mkdir()
            self._new_folder = True
        name = f"{table}/{version:012d}-{uuid.uuid4().hex[:8]}.parquet"
        write_parquet(self.lake_dir, name, data, defaults.FRESH_SEGMENT_COMPRESSION)
        fsync_dir(folder)
        span = pc.min_max(data["ts"].cast(pa.int64()))
        return Segment(file=name, rows=data.num_rows, min_ts=span["min"].as_py(),
                       max_ts=span["max"].as_py())

    # -- maintenance -----------------------------------------------------------------
    def compact(self, keep_newest: int = 4, defer: bool = False) -> int:
        """Merge the older segments of tables that have too many; returns tables compacted.
        With ``defer`` (a busy host) only tables of ``COMPACT_MAX_SEGMENTS`` or more.

        Merges are tiered, so a row is rewritten a few times in its life, not at every
        compaction: the fresh segments merge into one of level 1, and ``COMPACT_FANOUT``
        segments of a level into one of the next. (Merging every small segment each time
        rewrote the growing merged file again and again: under steady load that cost more
        CPU per row than landing it.) A segment of ``COMPACT_TARGET_ROWS`` is never merged,
        and a merge takes segments only until it holds that many rows, so one merge holds
        about that many rows at most, however many segments waited.
        """
        compacted = 0
        for table, segments in list(self.manifest.tables.items()):
            if not self._too_many(segments, defer):
                continue
            merged_any = False
            level = 0
            while True:
                segments = self.manifest.tables[table]
                older = segments[:-keep_newest]
                same = [seg for seg in older if seg.rows < defaults.COMPACT_TARGET_ROWS
                        and _level(seg.file) == level]
                if len(same) >= (2 if level == 0 else defaults.COMPACT_FANOUT):
                    self._merge(table, _up_to_target(same), level + 1)
                    merged_any = True
                    continue  # a merge up to the target may leave more of this level
                if not any(_level(seg.file) > level for seg in older):
                    break
                level += 1
            compacted += merged_any
        return compacted

    @staticmethod
    def _too_many(segments: list[Segment], defer: bool) -> bool:
        if defer:
            return len(segments) >= defaults.COMPACT_MAX_SEGMENTS
        return len(segments) > defaults.COMPACT_AFTER_SEGMENTS

    def _would_compact(self) -> bool:
        return any(self._too_many(s, False) for s in self.manifest.tables.values())

    def _merge(self, table: str, old: list[Segment], level: int) -> None:
        """Replace segments ``old`` of ``table`` by one of ``level`` (installed at once; the
        old files are garbage after the grace period)."""
        # ParquetFile, not read_table: a third of the CPU (no dataset discovery per file)
        merged = pa.concat_tables([pq.ParquetFile(self.lake_dir / s.file).read() for s in old],
                                  promote_options="default")
        name = f"{table}/{self.manifest.version:012d}-c{level}-{uuid.uuid4().hex[:8]}.parquet"
        # A segment that will be merged again is written with LZ4: about half zstd's work
        # (16,000 against 27,000 instructions per prediction row under callgrind), about
        # 1.7 times the bytes, until it is.
        final = merged.num_rows >= defaults.COMPACT_TARGET_ROWS
        write_parquet(self.lake_dir, name, merged, "zstd" if final else "lz4")
        fsync_dir(self.lake_dir / table)
        seg = Segment(name, merged.num_rows, min(s.min_ts for s in old),
                      max(s.max_ts for s in old))
        after = time.time() + defaults.COMPACT_GRACE_SECONDS
        gone = {s.file for s in old}
        current = self.manifest.tables[table]
        first = next(i for i, s in enumerate(current) if s.file in gone)  # the merge goes there
        kept = [*current[:first], seg, *(s for s in current[first:] if s.file not in gone)]
        new = Manifest(
            version=self.manifest.version + 1,
            last_id=self.manifest.last_id,
            audit_seq=self.manifest.audit_seq,
            audit_hash=self.manifest.audit_hash,
            tables={**self.manifest.tables, table: kept},
            garbage=[*self.manifest.garbage, *({"file": s.file, "after": after} for s in old)],
        )
        write_manifest(self.lake_dir, new)
        self.manifest = new

    def collect_garbage(self, now: float | None = None) -> int:
        """Delete superseded segment files whose grace period has passed."""
        now = time.time() if now is None else now
        due = [g for g in self.manifest.garbage if g["after"] <= now]
        if not due:
            return 0
        keep = [g for g in self.manifest.garbage if g["after"] > now]
        new = replace(self.manifest, version=self.manifest.version + 1, garbage=keep)
        write_manifest(self.lake_dir, new)  # installed first: a failed write forgets nothing
        self.manifest = new
        for g in due:
            (self.lake_dir / g["file"]).unlink(missing_ok=True)
        return len(due)

    def _sweep_orphans(self) -> None:
        listed = {s.file for segs in self.manifest.tables.values() for s in segs}
        listed |= {g["file"] for g in self.manifest.garbage}
        for path in self.lake_dir.glob("*/*.parquet*"):
            rel = f"{path.parent.name}/{path.name}"
            if rel not in listed:
                log.info("ingest: removing %s left by an interrupted commit", rel)
                path.unlink(missing_ok=True)

    def _load_recent_ids(self) -> None:
        """Remember the ids of segments written in the dedupe window (by file age, not by the
        client-supplied event times, so a back-dated retry is still caught)."""
        cutoff = time.time() - DEDUPE_WINDOW_SECONDS
        now = time.time()
        ids = []
        for table, segments in self.manifest.tables.items():
            for seg in segments:
                path = self.lake_dir / seg.file
                if path.stat().st_mtime < cutoff:
                    continue
                cols = ["id", "actor"] if "actor" in pq.read_schema(path).names else ["id"]
                data = pq.read_table(path, columns=cols).to_pylist()
                ids += [dedupe_key(table, row) for row in data]
        self._remember(ids, now)

    def _remember(self, ids: list[str], now: float) -> None:
        if ids:
            self._seen.update(ids)
            self._generations.append((now, ids))

    def _forget_old_ids(self, now: float) -> None:
        """Forget the commits older than the window, and the oldest ones while more than
        ``DEDUPE_MAX_IDS`` ids are kept (whole commits: a few thousand ids at most)."""
        cutoff = now - DEDUPE_WINDOW_SECONDS
        while self._generations and (self._generations[0][0] < cutoff
                                     or len(self._seen) > DEDUPE_MAX_IDS):
            self._seen.difference_update(self._generations.popleft()[1])

    def _check_head(self) -> None:
        """Keep evidence when Redis holds a head that is not a point on the lake's chain.

        A head *behind* the manifest is normal (the ingest died between installing the
        manifest and publishing the head) as long as it matches the entry at its seq.
        """
        kept = self.redis.get(HEAD_KEY)
        if kept is None:
            return
        seq, digest = json.loads(kept)
        if seq == self.manifest.audit_seq and digest == self.manifest.audit_hash:
            return
        if 0 < seq < self.manifest.audit_seq and self._audit_hash_at(seq) == digest:
            return
        log.error("audit head in Redis %s is not on the lake's chain (head seq %s)", kept,
                  self.manifest.audit_seq)
        self.redis.rpush(CONFLICT_KEY, kept)

    def _audit_hash_at(self, seq: int) -> str | None:
        for seg in self.manifest.tables.get("audit", []):
            table = pq.read_table(self.lake_dir / seg.file, columns=["seq", "hash"])
            for row in table.to_pylist():
                if row["seq"] == seq:
                    return str(row["hash"])
        return None

    def _publish_head(self) -> None:
        head = json.dumps([self.manifest.audit_seq, self.manifest.audit_hash])
        self.redis.set(HEAD_KEY, head)
