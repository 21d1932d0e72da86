"""The prediction log and the rate limit, off the request's critical path.

A request used to wait for one Redis round trip: count the caller's hit, append its rows to
the event stream. On a 2-core box that wait cost more CPU than the model (the send wakes
Redis, the reply wakes the thread, the GIL changes hands twice), a third of a request.

Now a request writes its rows to this process's spool file (:mod:`mlwb.spool`: one
``write``; it survives a SIGKILL of the process) and counts its caller's hit in memory. A
thread of the process ships what gathered every few milliseconds in one round trip: the
rows to the stream, the spool offset they end at (a dead process's file is shipped by a
sibling from there), and each caller's new hits to the shared Redis counters of
:class:`mlwb.ratelimit.FixedWindow`, whose totals come back.

The rate limit stays shared by every process: a process admits a hit while its caller's
last known total plus this process's hits not yet shipped is within the limit. Within one
process that is exact; across processes a caller can overshoot by the hits other processes
admitted in the last few milliseconds (one shipping interval), a few at most.

While Redis cannot be reached or stops answering, requests are refused (503, nothing
recorded); what is in the spool already is shipped when it answers again.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import redis

from mlwb.ratelimit import FixedWindow
from mlwb.redis_script import FastScript
from mlwb.spool import Batch, Spool, any_files, orphans

log = logging.getLogger(__name__)

INTERVAL = 0.02  # seconds the shipper lets events gather before a round trip
RETRY = 0.25  # seconds between tries while Redis is unreachable
ORPHAN_SCAN = 1.0  # seconds between looks for the spool files of dead processes
MAX_LINES = 500  # lines in one round trip (one stream entry) at most
TIMEOUT = 5.0  # seconds a round trip may take before Redis counts as unreachable

# KEYS: the stream, the spool's offset key ('' for counts alone), then the rate-limit keys.
# ARGV: the offset the lines start at, the one after them, the rate keys' TTL, the lines
# ("table\tjson\n" each, joined; '' for none), then one hit count per rate key. The lines
# become one stream entry (a shipment: the ingest splits it). Only those past the stored
# offset are added (missing: 0; it is always the end of a line): a call whose reply was
# lost, and which is then repeated with more lines behind it, adds the rest once. Returns
# each rate key's new total.
SHIP = """
if KEYS[2] ~= '' then
  local at = tonumber(redis.call('GET', KEYS[2]) or '0')
  local start, stop = tonumber(ARGV[1]), tonumber(ARGV[2])
  if at < stop then
    local from = math.max(at - start, 0) + 1
    if from == 1 then  -- the usual case: no copy of the lines
      if #ARGV[4] > 0 then redis.call('XADD', KEYS[1], '*', 'lines', ARGV[4]) end
    elseif from <= #ARGV[4] then
      redis.call('XADD', KEYS[1], '*', 'lines', string.sub(ARGV[4], from))
    end
    redis.call('SET', KEYS[2], ARGV[2])
  end
end
local totals = {}
for r = 3, #KEYS do
  local hits = tonumber(ARGV[r + 2])
  local total = redis.call('INCRBY', KEYS[r], hits)
  if total == hits then redis.call('EXPIRE', KEYS[r], ARGV[3]) end
  totals[r - 2] = total
end
return totals
"""


_live: weakref.WeakSet[Shipper] = weakref.WeakSet()


def _in_child() -> None:
    for shipper in list(_live):
        shipper._forked()


os.register_at_fork(after_in_child=_in_child)  # a forked child starts with nothing of these


def flush_all() -> None:
    """Ship what every shipper of this process holds (tests, before they land the log)."""
    for shipper in list(_live):
        shipper.flush()


def _loop(ref: weakref.ref[Shipper]) -> None:
    while True:
        shipper = ref()
        if shipper is None or shipper._closed:
            return
        shipper._step()
        del shipper


@atexit.register
def _close_all() -> None:
    """At exit, ship what is left (what cannot be shipped stays in the spool)."""
    for shipper in list(_live):
        if shipper._thread is not None:
            shipper.close()


def client_for(url: str) -> redis.Redis:
    """The shipper's own connection, with its own timeout (not whatever redis-py's default
    is: none before 8.0). A Redis that accepts but stops answering (stopped, swapping) fails
    a round trip after ``TIMEOUT`` seconds, and requests are refused until it answers,
    instead of the log stalling unseen while the spool grows. (A round trip that timed out
    may still have run: its rows are not added twice, its hit counts are.)"""
    return redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT,
                                health_check_interval=30)


def offset_key(spool_id: str) -> str:
    """Where the offset shipped so far of spool ``spool_id`` is kept."""
    return f"wb:spool:{spool_id}"


class Shipper:
    """One per API process: counts hits, spools rows, ships both in the background."""

    def __init__(self, client: redis.Redis, stream: str, limiter: FixedWindow,
                 spool_dir: Path) -> None:
        self.client = client
        self.stream = stream
        self.limiter = limiter
        self.spool_dir = spool_dir
        self.script = FastScript(client, SHIP)
        self.spool = Spool(spool_dir)
        self.failing: str | None = None  # why the last round trip failed; None when fine
        self.round_trips = 0  # for tests and the benchmark
        self._lock = threading.Lock()  # the counts below
        self._ship_lock = threading.Lock()  # one round trip at a time
        self._known: dict[str, int] = {}  # rate key -> total in Redis as last seen
        self._unshipped: dict[str, int] = {}  # rate key -> hits counted here, not shipped
        self._wake = threading.Event()
        self._idle = False  # the shipper waits for work (only then is it woken)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_scan = 0.0
        _live.add(self)

    # -- the request's side ------------------------------------------------------
    def hit(self, caller: str) -> int:
        """Count one hit of ``caller``; its total in this window as far as this process
        knows (exact within the process)."""
        key = self.limiter.key(caller)
        with self._lock:
            unshipped = self._unshipped.get(key, 0) + 1
            self._unshipped[key] = unshipped
            total = self._known.get(key, 0) + unshipped
        self._nudge()
        return total

    def unhit(self, caller: str) -> None:
        """Take back a hit of ``caller`` counted by :meth:`hit` for a request that then
        failed on our side (its rows could not be spooled): it was told to retry, and the
        retry is the hit that counts. (Taken back in the current window: one counted in
        the last instant of the previous window stays there.)"""
        key = self.limiter.key(caller)
        with self._lock:
            self._subtract(key, 1)  # below 0 if the hit was shipped already

    def record(self, rows: list[tuple[str, bytes]]) -> None:
        """Spool ``rows`` (table, JSON) before the response goes out; raises ``OSError``
        if the spool cannot take them (nothing of them is kept then)."""
        lines = [table.encode() + b"\t" + data + b"\n" for table, data in rows]
        self.spool.append(b"".join(lines), lines)
        self._nudge()

    def _nudge(self) -> None:
        """There is work: start the shipper on first use; wake it only if it waits (under
        load it never does: no wake-up to pay per request)."""
        if self._thread is None:
            self._start()
        if self._idle:
            self._wake.set()

    def hit_now(self, caller: str) -> int:
        """Count one hit and ship at once (for refused requests): the shared total."""
        key = self.limiter.key(caller)
        with self._lock:
            self._unshipped[key] = self._unshipped.get(key, 0) + 1
        self.ship()  # this round trip carries every count, ours included
        with self._lock:
            return self._known.get(key, 0) + self._unshipped.get(key, 0)

    # -- shipping ---------------------------------------------------------------------
    def flush(self) -> None:
        """Ship everything counted and spooled so far (raises ``redis.RedisError``)."""
        for _ in range(self.spool.backlog() + 2):  # bounded: other threads keep adding
            if not self.ship():
                return

    def ship(self) -> bool:
        """One round trip for the oldest spooled rows and every count; False if there was
        nothing to ship (raises ``redis.RedisError``, keeping it all for the next try)."""
        with self._ship_lock:
            batch = self.spool.take(MAX_LINES)
            with self._lock:
                counts = {k: n for k, n in self._unshipped.items() if n}
            if batch is None and not counts:
                return False
            try:
                self._round_trip(batch, counts)
            except BaseException:
                if batch is not None:
                    self.spool.untake(batch)
                raise
            if batch is not None:
                self._forget(self.spool.drop_shipped())
            return True

    def _round_trip(self, batch: Batch | None, counts: dict[str, int]) -> None:
        batch = batch or Batch("", [], 0, 0)  # counts alone: no offset key, no lines
        offset = offset_key(batch.spool_id) if batch.spool_id else ""
        keys = [self.stream, offset, *counts]
        args: list[Any] = [batch.start, batch.end, self.limiter.window + 1,
                           b"".join(batch.lines), *counts.values()]
        totals = self.script(keys, args)
        with self._lock:
            self.round_trips += 1
            for (key, n), total in zip(counts.items(), totals, strict=True):
                self._known[key] = int(total)
                self._subtract(key, n)

    def _subtract(self, key: str, n: int) -> None:
        """Hits of ``key`` no longer unshipped (shipped, or taken back); under ``_lock``."""
        left = self._unshipped.get(key, 0) - n
        if left:
            self._unshipped[key] = left
        else:
            self._unshipped.pop(key, None)

    def _forget(self, spool_ids: list[str]) -> None:
        """Deleted spool files need no offset any more."""
        if spool_ids:
            self.client.delete(*(offset_key(i) for i in spool_ids))

    def ship_orphans(self) -> int:
        """Ship the spool files of dead processes from where they stopped; lines shipped."""
        shipped = 0
        for orphan in orphans(self.spool_dir):
            try:
                key = offset_key(orphan.spool_id)
                offset = int(self.client.get(key) or 0)
                lines, _ = orphan.lines_from(offset)
                for i in range(0, len(lines), MAX_LINES):  # each part resumable on its own
                    part = lines[i:i + MAX_LINES]
                    stop = offset + sum(len(line) for line in part)
                    with self._ship_lock:
                        self._round_trip(Batch(orphan.spool_id, part, offset, stop), {})
                    offset = stop
                orphan.done()  # the file first: a crash now leaves a key and no file
                self.client.delete(key)
                shipped += len(lines)
            except BaseException:
                orphan.release()
                raise
        if shipped:
            log.info("shipped %d events left in the spool of a stopped process", shipped)
        return shipped

    def start_if_left_over(self) -> None:
        """At boot: start shipping now if spool files are already there (a stopped
        process's rows reach the lake without waiting for this process's first request)."""
        if any_files(self.spool_dir):
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                # The thread holds the shipper only weakly between rounds: an app that is
                # dropped (tests make many) takes its shipper and the thread with it.
                self._thread = threading.Thread(target=_loop, args=(weakref.ref(self),),
                                                name="wb-shipper", daemon=True)
                self._thread.start()

    def _forked(self) -> None:
        """In a forked child: the parent's counts, files, thread and locks are not ours."""
        self.spool.abandon()
        self.failing = None
        self._lock, self._ship_lock = threading.Lock(), threading.Lock()
        self._known, self._unshipped = {}, {}
        self._wake, self._thread, self._idle = threading.Event(), None, False

    def _step(self) -> None:
        """One round of the shipping thread: wait for work, gather, ship."""
        self._idle = True  # before looking: a later event sees it and wakes us
        if not self._pending():
            self._wake.wait(ORPHAN_SCAN)
            self._wake.clear()
        self._idle = False
        time.sleep(INTERVAL)  # let more requests' events gather
        try:
            self.ship()  # one round trip; what gathers meanwhile waits for the next
            self.failing = None
        except Exception as exc:  # Redis away: requests are refused until it is back
            if self.failing is None:
                log.warning("the prediction log cannot reach Redis: %s", exc)
            self.failing = str(exc) or type(exc).__name__
            time.sleep(RETRY)
            return
        if time.monotonic() - self._last_scan > ORPHAN_SCAN:
            self._last_scan = time.monotonic()
            self._forget_old_windows()
            try:  # another process's file: its trouble must not refuse our requests
                self.ship_orphans()
            except Exception:
                log.warning("a stopped process's spool could not be shipped yet",
                            exc_info=True)

    def _pending(self) -> bool:
        return bool(self._unshipped) or self.spool.backlog() > 0

    def forget_counts(self) -> None:
        """Drop what this process knows of the shared counters (after they were reset)."""
        with self._lock:
            self._known.clear()

    def _forget_old_windows(self) -> None:
        bucket = f":{int(time.time() // self.limiter.window)}"
        with self._lock:
            for key in [k for k in self._known if not k.endswith(bucket)]:
                if key not in self._unshipped:
                    del self._known[key]

    def close(self, timeout: float = 2.0) -> None:
        """Ship what is left (at exit); what cannot be shipped stays in the spool."""
        self._closed = True
        self._wake.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.flush()
                # Under the round trip's lock: a batch the thread took after the flush is
                # "handed over" but not landed, and its file must outlive a failed trip.
                with self._ship_lock:
                    if not self._pending():  # a clean exit leaves no file for a sibling
                        self._forget(self.spool.drop_shipped(current=True))
                return
            except Exception:
                time.sleep(0.1)
