"""The API's gunicorn worker: gthread, with new connections going to the worker that holds fewest.

Every gunicorn worker polls the one listening socket, and whichever wakes first accepts. A
client that opens its keep-alive pool in one burst (``wrk``, a ``requests.Session`` pool, a
load balancer's upstream pool) often lands every connection on one worker and keeps them
there: that worker runs on one core under its GIL while the others idle. Measured on a
2-core box with 8 connections to a constant Flask endpoint, 2 workers x 4 threads: 8,900
requests/s when the connections are split, 3,700 when all eight landed on one worker.

:class:`BalancedThreadWorker` keeps gunicorn's ``gthread`` worker and changes one rule: a
worker that already holds more connections than a live, accepting sibling leaves a new
connection to that sibling for a moment (``PAUSE`` at a time, ``MAX_WAIT`` in all from the
first time it saw that connection, then it accepts it itself, so a stuck sibling delays a
client by ``MAX_WAIT`` at most). Each worker publishes its connection count and a heartbeat
in a small table shared through ``mmap``, made in the master by :meth:`setup` before the
workers are forked. A worker publishes only while it runs and accepts: booting, draining
(HUP, ``max_requests``, shutdown) or dead, it is not a sibling to wait for. With
``reuse_port`` (one socket per worker, so no sibling can take a connection) or one worker,
nothing changes.

With a worker per core, each worker also pins itself to a core of its own
(:mod:`mlwb.cpu_pin`, ``WB_API_PIN_CPUS``); the shared table says which core each holds, so
a replacement takes the core its predecessor left (with ``reuse_port``, which has no table,
workers spread by gunicorn's numbering alone).

It lives in ``mlwb``, not ``api``: gunicorn imports the worker class in the master, and a
module under ``api`` would import the whole app there, so a HUP would fork workers with the
old code.
"""

from __future__ import annotations

import gc
import mmap
import os
import time
from typing import Any, ClassVar

from gunicorn.workers.gthread import ThreadWorker

from mlwb import cpu_pin

WORKER_CLASS = "mlwb.gunicorn_worker.BalancedThreadWorker"  # what `wb api` gives gunicorn
SLOTS = 64  # workers of one master that take part (more still serve, unbalanced)
PAUSE = 0.001  # seconds a loaded worker leaves a new connection to a lighter sibling
MAX_WAIT = 0.02  # after this long it accepts the connection itself
STALE = 3.0  # seconds without a heartbeat after which a slot is ignored
_FIELDS = 4  # per slot: pid, open connections, heartbeat (monotonic microseconds; 0: none),
# the core the worker pinned itself to plus one (0: not pinned)


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """``gthread`` with least-connections accepting across the master's workers."""

    _table: ClassVar[memoryview | None] = None

    @classmethod
    def setup(cls) -> None:
        """In the master, before any fork: the shared table every worker will inherit."""
        cpu_pin.mode()  # a wrong WB_API_PIN_CPUS stops gunicorn at start, saying why
        if cls._table is None:
            cls._table = memoryview(mmap.mmap(-1, SLOTS * _FIELDS * 8)).cast("q")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slot = -1
        self._pid = 0
        self._core = 0  # the core this worker pinned itself to, plus one (0: not pinned)
        self._paused_until = 0.0
        self._waiting_since: float | None = None  # first deferral of the pending connection
        self._accepted = False  # accept() ran during the current loop step
        self._leaving = False  # the master is gone: gthread drains without accepting

    def init_process(self) -> None:
        """Claim a slot (free, or left by a dead worker), then boot as gthread does."""
        type(self).setup()  # a no-op unless the class was loaded without gunicorn's setup
        self._pid = os.getpid()
        if not self.cfg.reuse_port:
            self._slot = self._claim()
        self._pin()  # before gthread starts its threads: they inherit the core
        super().init_process()

    def load_wsgi(self) -> None:
        """Load the app, then freeze what exists so far (``gc.freeze``): the imports and
        the app live as long as the worker. The API's objects (mlflow, torch, pandas:
        ~590,000 with two models) made a full collection stop the worker for ~450 ms now
        and then under load; frozen, the collector no longer scans them. The serving
        runtime freezes each model it loads too (``api.serving.runtime``)."""
        super().load_wsgi()
        gc.freeze()

    def run(self) -> None:
        """gthread's loop; the slot shows this worker only while it runs and accepts."""
        try:
            super().run()
        finally:
            self._retire()

    def accept(self, listener: Any) -> None:
        """Accept, unless a live sibling holds fewer connections: then give it a moment."""
        self._accepted = True
        now = time.monotonic()
        if self.nr_conns > self._fewest_elsewhere(now):
            if self._waiting_since is None:
                self._waiting_since = now
            if now - self._waiting_since < MAX_WAIT:
                self._paused_until = now + PAUSE  # level-triggered: we would spin otherwise
                self.set_accept_enabled(False)
                return
        self._waiting_since = None
        super().accept(listener)  # the loop step that called this publishes the new count

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
        listening = self._accepting
        if listening and self._waiting_since is not None:
            timeout = 0  # is the connection it left still there? (else a later one inherits
            # the old wait and is taken without deferring)
        self._accepted = False
        super().wait_for_and_dispatch_events(timeout)
        if listening and not self._accepted:
            self._waiting_since = None  # nothing pending any more: a sibling took it
        self._publish()

    def is_parent_alive(self) -> bool:
        """gthread's check; an orphaned worker stops being a sibling at once."""
        alive: bool = super().is_parent_alive()
        self._leaving = self._leaving or not alive
        return alive

    def _claim(self) -> int:
        table = self._table
        assert table is not None
        pid = self._pid
        start = self.age % SLOTS  # ages are distinct, so booting workers rarely probe alike
        for i in range(SLOTS):
            slot = (start + i) % SLOTS
            held = table[slot * _FIELDS]
            if held == 0 or held == pid or not _alive(held):
                table[slot * _FIELDS + 2] = 0  # no heartbeat until it runs
                table[slot * _FIELDS + 3] = 0  # no core yet
                table[slot * _FIELDS] = pid
                if table[slot * _FIELDS] == pid:  # a race lost to a sibling: probe on
                    return slot
        return -1  # more workers than slots: this one serves without balancing

    def _pin(self) -> None:
        """Pin this worker to the core its live siblings hold least (``mlwb.cpu_pin``)."""
        how = cpu_pin.mode()
        if how == "off":
            return
        cpus = cpu_pin.usable_cpus()
        if not cpu_pin.should_pin(how, self.cfg.workers, len(cpus)):
            return
        table = self._table
        taken = []
        if table is not None:
            for slot in range(SLOTS):
                base = slot * _FIELDS
                pid, core = table[base], table[base + 3]
                if slot != self._slot and core > 0 and pid != self._pid and _alive(pid):
                    taken.append(core - 1)
        cpu = cpu_pin.choose(cpus, taken, self.age)
        try:
            cpu_pin.pin(cpu)
        except OSError as exc:  # the cpuset changed meanwhile, or a sandbox forbids it
            self.log.warning("worker %s runs unpinned: core %s refused (%s)",
                             self._pid, cpu, exc)
            return
        self._core = cpu + 1
        if table is not None and self._slot >= 0 and table[self._slot * _FIELDS] == self._pid:
            table[self._slot * _FIELDS + 3] = self._core

    def _publish(self) -> None:
        table = self._table
        if table is None or self._slot < 0:
            return
        base = self._slot * _FIELDS
        if table[base] != self._pid:  # a sibling claimed it in the same instant: move on
            self._slot = self._claim()
            return
        if not self.alive or self._leaving:
            self._retire()
            return
        table[base + 1] = self.nr_conns
        table[base + 2] = int(time.monotonic() * 1e6)
        table[base + 3] = self._core  # again each step: a slot claimed anew gets it back

    def _retire(self) -> None:
        """Draining or gone: no sibling should leave connections to this worker."""
        table = self._table
        if table is not None and self._slot >= 0 and table[self._slot * _FIELDS] == self._pid:
            table[self._slot * _FIELDS + 2] = 0

    def _fewest_elsewhere(self, now: float) -> float:
        """The fewest connections a live, running sibling holds (infinity without one)."""
        table = self._table
        if table is None or self._slot < 0:
            return float("inf")
        fresh = int((now - STALE) * 1e6)
        fewest, who = float("inf"), -1
        for slot in range(SLOTS):
            base = slot * _FIELDS
            beat = table[base + 2]
            if slot != self._slot and beat > 0 and beat > fresh and table[base + 1] < fewest:
                fewest, who = table[base + 1], slot
        if who >= 0 and not _alive(table[who * _FIELDS]):
            table[who * _FIELDS + 2] = 0  # died since its last heartbeat: ignore it now
            return self._fewest_elsewhere(now)
        return fewest


def _alive(pid: int) -> bool:
    if pid <= 0:  # never signal a process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
