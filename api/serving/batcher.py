"""Flat combining: concurrent request threads share one call, without a batching thread.

Threads that arrive while a call is running queue their items; when the call ends, one of
them runs *all* queued items (up to a size limit) as one call and hands each thread its
result. An idle combiner runs a lone item at once in the caller's own thread: combining adds
no latency and no thread hand-off when there is no concurrency, and under load concurrent
requests share calls. Its user here is :class:`Batcher`: dynamic micro-batching of torch
forward passes (on a GPU, the difference between one kernel launch per request and one per
batch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

MAX_BATCH = 64  # rows in one forward pass; 1 switches batching off

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "event", "item", "lead", "result", "size")

    def __init__(self, item: T, size: int) -> None:
        self.item = item
        self.size = size
        self.event: threading.Event | None = None  # made only for a thread that waits
        self.done = False
        self.lead = False
        self.result: R | None = None
        self.error: BaseException | None = None


class Combiner(Generic[T, R]):
    """Calls ``fn`` on the items of concurrent callers; each gets its own result back.

    ``fn`` takes a list of items and returns one result per item, in order. ``size`` is an
    item's share of ``max_size`` (a batch is cut before it would exceed it; an item larger
    than the limit runs alone).
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_size: int = MAX_BATCH,
                 size: Callable[[T], int] = lambda _: 1) -> None:
        self.fn = fn
        self.max_size = max(1, max_size)
        self.size = size
        self._lock = threading.Lock()
        self._pending: list[_Slot[T, R]] = []
        self._busy = False
        self.calls = 0  # calls of fn (for tests and the benchmarks)
        self.items = 0

    def __call__(self, item: T) -> R:
        """``fn([item])[0]``, possibly computed together with other threads' items."""
        # Sized here, in the caller's own thread: an item whose size fails fails its caller
        # only, before it is queued, never the leader of someone else's batch.
        slot: _Slot[T, R] = _Slot(item, self.size(item))
        with self._lock:
            self._pending.append(slot)
            lead = not self._busy
            self._busy = True
            if not lead:
                slot.event = threading.Event()
        if not lead:
            assert slot.event is not None
            slot.event.wait()
            if not slot.lead:
                return self._result(slot)
        self._lead(slot)
        return self._result(slot)

    @staticmethod
    def _result(slot: _Slot[T, R]) -> R:
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self, mine: _Slot[T, R]) -> None:
        """Run batches until this thread's own item is done, then pass the lead on."""
        while not mine.done:
            with self._lock:
                batch: list[_Slot[T, R]] = []
                total = 0
                while self._pending and (not batch or total + self._pending[0].size
                                         <= self.max_size):
                    slot = self._pending.pop(0)
                    batch.append(slot)
                    total += slot.size
            self._run(batch)
        with self._lock:
            if self._pending:
                nxt = self._pending[0]
                nxt.lead = True
                assert nxt.event is not None
                nxt.event.set()
            else:
                self._busy = False

    def _run(self, batch: list[_Slot[T, R]]) -> None:
        try:
            results = self.fn([s.item for s in batch])
            self.calls += 1
            self.items += len(batch)
            for s, r in zip(batch, results, strict=True):
                s.result = r
        except BaseException as exc:  # every waiting caller gets the error, none hangs
            for s in batch:
                s.error = exc
        for s in batch:
            s.done = True
            if not s.lead and s.event is not None:
                s.event.set()


class Batcher:
    """Runs ``forward`` on the concatenated rows of concurrent callers (at most ``max_batch``
    rows per pass); each caller gets its own rows' outputs back."""

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_batch: int = MAX_BATCH
                 ) -> None:
        self.forward = forward
        self.max_batch = max(1, max_batch)
        self._combiner: Combiner[np.ndarray, np.ndarray] = Combiner(self._pass, self.max_batch,
                                                                    len)
        self.passes = 0  # forward passes run (for tests and the benchmark)
        self.rows = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``forward(x)``, possibly computed together with other threads' rows."""
        if self.max_batch == 1:
            self.passes += 1
            self.rows += len(x)
            return self.forward(x)
        return self._combiner(x)

    def _pass(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        x = xs[0] if len(xs) == 1 else np.concatenate(xs)
        out = self.forward(x)
        self.passes += 1
        self.rows += len(x)
        if len(xs) == 1:
            return [out]
        bounds = np.cumsum([len(a) for a in xs])[:-1]
        return np.split(out, bounds)
