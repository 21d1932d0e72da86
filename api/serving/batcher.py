"""Dynamic micro-batching for torch models, without a batching thread.

Request threads that arrive while a forward pass is running queue their rows; when the pass
ends, one of them runs *all* queued rows (up to ``max_batch``) as one forward pass and hands
each thread its slice ("flat combining"). An idle model runs a lone request at once in the
caller's own thread: batching adds no latency and no thread hand-off when there is no
concurrency, and under load concurrent requests share passes (on a GPU, the difference
between one kernel launch per request and one per batch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

MAX_BATCH = 64  # rows in one forward pass; 1 switches batching off


class _Slot:
    __slots__ = ("done", "error", "event", "lead", "result", "x")

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.event = threading.Event()
        self.done = False
        self.lead = False
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class Batcher:
    """Calls ``fn`` on concatenated rows of concurrent callers; each gets its own rows back."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], max_batch: int = MAX_BATCH
                 ) -> None:
        self.fn = fn
        self.max_batch = max(1, max_batch)
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        self._busy = False
        self.passes = 0  # forward passes run (for tests and the benchmark)
        self.rows = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``fn(x)``, possibly computed together with other threads' rows."""
        if self.max_batch == 1:
            self.passes += 1
            return self.fn(x)
        slot = _Slot(x)
        with self._lock:
            self._pending.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.event.wait()
            if not slot.lead:
                return self._result(slot)
        self._lead(slot)
        return self._result(slot)

    @staticmethod
    def _result(slot: _Slot) -> np.ndarray:
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result

    def _lead(self, mine: _Slot) -> None:
        """Run batches until this thread's own rows are done, then pass the lead on."""
        while not mine.done:
            with self._lock:
                batch: list[_Slot] = []
                rows = 0
                while self._pending and (not batch or rows + len(self._pending[0].x)
                                         <= self.max_batch):
                    slot = self._pending.pop(0)
                    batch.append(slot)
                    rows += len(slot.x)
            self._run(batch)
        with self._lock:
            if self._pending:
                nxt = self._pending[0]
                nxt.lead = True
                nxt.event.set()
            else:
                self._busy = False

    def _run(self, batch: list[_Slot]) -> None:
        try:
            x = batch[0].x if len(batch) == 1 else np.concatenate([s.x for s in batch])
            out = self.fn(x)
            self.passes += 1
            self.rows += len(x)
            start = 0
            for s in batch:
                s.result = out[start:start + len(s.x)]
                start += len(s.x)
        except BaseException as exc:  # every waiting caller gets the error, none hangs
            for s in batch:
                s.error = exc
        for s in batch:
            s.done = True
            if not s.lead:
                s.event.set()
