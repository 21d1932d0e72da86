"""Micro-batching: concurrent callers share forward passes and each gets its own rows."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from api.serving.batcher import Batcher
from tests.serving.conftest import World


def test_concurrent_calls_share_passes_and_get_their_own_rows() -> None:
    sizes: list[int] = []

    def forward(x: np.ndarray) -> np.ndarray:
        sizes.append(len(x))
        time.sleep(0.01)  # a pass long enough for others to queue behind it
        return x * 2

    batcher = Batcher(forward, max_batch=16)
    start = threading.Barrier(40)
    got: dict[int, np.ndarray] = {}

    def caller(i: int) -> None:
        start.wait()
        got[i] = batcher(np.full((1 + i % 3, 2), float(i)))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(got) == 40
    for i, out in got.items():
        np.testing.assert_array_equal(out, np.full((1 + i % 3, 2), 2.0 * i))
    assert sum(sizes) == sum(1 + i % 3 for i in range(40))
    assert len(sizes) < 40 and max(sizes) <= 16  # batched, never over the maximum
    # Alone, a call runs at once in the caller's thread: one pass, its own rows.
    assert len(Batcher(forward, 16)(np.ones((1, 2)))) == 1


def test_an_error_reaches_every_caller_of_the_batch() -> None:
    def forward(x: np.ndarray) -> np.ndarray:
        time.sleep(0.01)
        raise ValueError("boom")

    batcher = Batcher(forward)
    errors: list[str] = []

    def caller() -> None:
        with pytest.raises(ValueError):
            batcher(np.ones((1, 1)))
        errors.append("raised")

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == ["raised"] * 8


def test_torch_requests_in_parallel_equal_pyfunc(world: World) -> None:
    name = world.model("mlp")
    X = world.zoo.X
    expected = world.pyfunc(name).predict(X.iloc[:64]).tolist()
    got: dict[int, object] = {}

    def caller(i: int) -> None:
        client = world.app.test_client()
        r = client.post(f"/api/models/{name}/predict", json={"instances": world.rows(1, i)},
                        headers=world.headers)
        got[i] = r.get_json()["predictions"][0]["prediction"]

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [got[i] for i in range(64)] == expected


def test_an_item_that_cannot_be_sized_fails_only_its_caller() -> None:
    from api.serving.batcher import Combiner

    release = threading.Event()

    def slow(items: list[object]) -> list[object]:
        release.wait(5)
        return items

    combiner: Combiner[object, object] = Combiner(slow, 8, lambda item: len(item))  # type: ignore[arg-type]
    leader = threading.Thread(target=combiner, args=([1],))
    leader.start()
    time.sleep(0.05)  # the leader is inside slow(); the next callers queue behind it
    with pytest.raises(TypeError):
        combiner(5)  # len(5) fails in the caller, before it is queued
    got: list[object] = []
    follower = threading.Thread(target=lambda: got.append(combiner([2, 3])))
    follower.start()
    release.set()
    leader.join(timeout=10)
    follower.join(timeout=10)
    assert got == [[2, 3]] and not follower.is_alive()
