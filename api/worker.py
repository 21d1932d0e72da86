"""gunicorn's threaded worker, with new connections going to the worker that holds fewest.

Every gunicorn worker polls the one listening socket, and whichever wakes first accepts. A
client that opens its keep-alive pool in one burst (``wrk``, a ``requests.Session`` pool, a
load balancer's upstream pool) often lands every connection on one worker and keeps them
there: that worker runs on one core under its GIL while the others idle. Measured on a
2-core box with 8 connections to a constant Flask endpoint, 2 workers x 4 threads: 8,900
requests/s when the connections are split, 3,700 when all eight landed on one worker.

:class:`BalancedThreadWorker` keeps gunicorn's ``gthread`` worker and changes one rule: a
worker that already holds more connections than a live sibling leaves a new connection to
that sibling for a moment (``PAUSE`` at a time, ``MAX_WAIT`` at most, then it accepts it
itself, so a stuck sibling never strands a client). Each worker publishes its connection
count and a heartbeat in a small table shared through ``mmap``, created in the master by
:meth:`setup` before the workers are forked. A worker that stopped publishing (dead, or
replaced) is ignored after ``STALE`` seconds. With one worker nothing changes.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import time
from typing import Any, ClassVar

from gunicorn.workers.gthread import ThreadWorker

WORKER_CLASS = "api.worker.BalancedThreadWorker"  # what `wb api` passes to gunicorn
SLOTS = 256  # workers one master can have at once
PAUSE = 0.0003  # seconds a loaded worker leaves a new connection to a lighter sibling
MAX_WAIT = 0.02  # after this long it accepts the connection itself
STALE = 3.0  # seconds without a heartbeat after which a slot's count is ignored
_FIELDS = 3  # per slot: pid, open connections, heartbeat (monotonic microseconds)


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """``gthread`` with least-connections accepting across the master's workers."""

    _table: ClassVar[memoryview | None] = None
    _claim: ClassVar[Any] = None  # a lock shared by the workers, for claiming slots

    @classmethod
    def setup(cls) -> None:
        """In the master, before any fork: the shared table every worker will inherit."""
        if cls._table is None:
            cls._table = memoryview(mmap.mmap(-1, SLOTS * _FIELDS * 8)).cast("q")
            cls._claim = multiprocessing.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slot = -1
        self._paused_until = 0.0
        self._waiting_since = 0.0  # when this worker began leaving the pending connection
        self._left_at = 0.0  # when it last left one

    def init_process(self) -> None:
        """Claim a slot (a free one, or one a dead worker left), then run as gthread does."""
        type(self).setup()  # a no-op unless the class was loaded without gunicorn's setup
        table = self._table
        assert table is not None
        with self._claim:
            for slot in range(SLOTS):
                pid = table[slot * _FIELDS]
                if pid == 0 or not _alive(pid):
                    table[slot * _FIELDS] = os.getpid()
                    self._slot = slot
                    break
        self._publish()
        super().init_process()

    def accept(self, listener: Any) -> None:
        """Accept, unless a live sibling holds fewer connections: then give it a moment."""
        now = time.monotonic()
        if self.nr_conns > self._fewest_elsewhere(now):
            if now - self._left_at > 10 * PAUSE:  # not woken right after a pause: a new one
                self._waiting_since = now
            if now - self._waiting_since < MAX_WAIT:
                self._left_at = now
                self._paused_until = now + PAUSE  # level-triggered: we would spin otherwise
                self.set_accept_enabled(False)
                return
        super().accept(listener)
        self._publish()

    def set_accept_enabled(self, enabled: bool) -> None:
        """gthread's switch, kept off while a pause lasts."""
        if enabled and time.monotonic() < self._paused_until:
            return
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """gthread's loop step, woken in time to end a pause; publishes the count after."""
        pause = self._paused_until - time.monotonic()
        if pause > 0:
            timeout = min(timeout, pause)
        super().wait_for_and_dispatch_events(timeout)
        self._publish()

    def _publish(self) -> None:
        table = self._table
        if table is not None and self._slot >= 0:
            base = self._slot * _FIELDS
            table[base + 1] = self.nr_conns
            table[base + 2] = int(time.monotonic() * 1e6)

    def _fewest_elsewhere(self, now: float) -> float:
        """The fewest connections a live sibling holds (infinity without one)."""
        table = self._table
        fewest = float("inf")
        if table is None:
            return fewest
        fresh = int((now - STALE) * 1e6)
        for slot in range(SLOTS):
            base = slot * _FIELDS
            if table[base] == 0:  # slots are claimed in order: none after this one
                break
            if slot != self._slot and table[base + 2] > fresh and table[base + 1] < fewest:
                fewest = table[base + 1]
        return fewest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
