"""Choosing a core for an API worker (the worker itself is tested under real gunicorn in
test_gunicorn_worker.py)."""

from __future__ import annotations

import pytest

from mlwb import cpu_pin


def test_workers_booting_together_spread_over_the_cores() -> None:
    # gunicorn numbers the workers it starts 1, 2, ...: none sees a sibling pinned yet
    assert {cpu_pin.choose([0, 1], [], age) for age in (1, 2)} == {0, 1}
    assert {cpu_pin.choose([2, 5, 7], [], age) for age in (1, 2, 3)} == {2, 5, 7}


def test_a_worker_takes_the_core_its_live_siblings_hold_least() -> None:
    assert cpu_pin.choose([0, 1], [1], age=5) == 0  # its own order would say 1
    assert cpu_pin.choose([0, 1, 2], [0, 0, 1, 2], age=1) == 1  # 1 and 2 tie: its order
    assert cpu_pin.choose([0, 1, 2], [0, 0, 1, 2], age=2) == 2


@pytest.mark.parametrize(("how", "workers", "cpus", "pins"), [
    ("auto", 2, 2, True), ("auto", 4, 2, True), ("auto", 2, 8, False), ("auto", 3, 2, False),
    ("on", 2, 8, True), ("off", 2, 2, False), ("on", 1, 1, False),
])
def test_when_a_worker_pins_itself(how: str, workers: int, cpus: int, pins: bool) -> None:
    assert cpu_pin.should_pin(how, workers, cpus) is pins


def test_the_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cpu_pin.ENV, raising=False)
    assert cpu_pin.mode() == "auto"
    monkeypatch.setenv(cpu_pin.ENV, " Off ")
    assert cpu_pin.mode() == "off"
    monkeypatch.setenv(cpu_pin.ENV, "sometimes")
    with pytest.raises(ValueError, match="set it to auto"):
        cpu_pin.mode()


def test_without_an_affinity_call_nothing_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS has no sched_getaffinity: the API starts unpinned there."""
    monkeypatch.delattr("os.sched_getaffinity")
    assert cpu_pin.usable_cpus() == []
    assert not cpu_pin.should_pin("on", 2, len(cpu_pin.usable_cpus()))
