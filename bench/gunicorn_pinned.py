"""gunicorn config for the MLflow contender: its uvicorn workers pinned to cores by the rule
and setting our API's worker follows (``mlwb.cpu_pin``), so that every contender runs with
the same worker settings."""

from __future__ import annotations

from typing import Any

from mlwb import cpu_pin


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker, before it starts any thread."""
    cpus = cpu_pin.usable_cpus()
    if cpu_pin.should_pin(cpu_pin.mode(), server.cfg.workers, len(cpus)):
        cpu_pin.pin(cpu_pin.choose(cpus, [], worker.age))
