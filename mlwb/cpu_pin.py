"""Which CPU an API worker process runs on.

A gunicorn worker runs its Python under one GIL, so it never uses more than one core for
long, yet Linux moves its threads between cores: the poller on one, a request thread on
the other, the shipper on a third. Every hand-off between them (the poller passing a
connection, the GIL changing hands) then wakes a thread on another core, which in a
virtual machine is an interrupt through the hypervisor, and the thread finds cold caches.
With as many workers as cores, each worker pinned to a core of its own served 8-59% more
predictions per second in 11 of 12 interleaved rounds on the 2-core VM of 2026-11-28, with a
lower p99 (``docs/architecture.md``).

``WB_API_PIN_CPUS``: ``auto`` (the default) pins when the API's workers fill the usable
cores evenly (a worker per core, the usual sizing of a box that serves, or two per core),
where no core is left idle to move to; with fewer workers than cores (a small API on a big
shared host) the scheduler keeps choosing. ``on`` always pins, ``off`` never does. What
pinning gives up: native code that releases the GIL (a torch forward pass, BLAS) can no
longer run on a sibling's idle core. A CPU quota (``docker --cpus``, a Kubernetes limit)
leaves the affinity as it is, so ``auto`` does not pin there.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

MODES = ("auto", "on", "off")
ENV = "WB_API_PIN_CPUS"


def mode() -> str:
    """The pinning mode from the environment (``wb api`` puts the setting there)."""
    return parse(os.environ.get(ENV, "auto"))


def parse(text: str) -> str:
    """``auto``, ``on`` or ``off`` (any case, spaces around; empty: ``auto``)."""
    value = text.strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r} is not one of {', '.join(MODES)}: set it to auto "
                         "(pin when the workers fill the cores evenly), on or off")
    return value


def usable_cpus() -> list[int]:
    """The cores this process may run on (its affinity: a container's cpuset, taskset);
    none where the system has no affinity call (macOS): nothing is pinned there."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def should_pin(how: str, workers: int, cpus: int) -> bool:
    """Whether a worker of ``workers`` on ``cpus`` usable cores pins itself. ``auto``: only
    when the workers share the cores evenly (3 workers on 2 cores would leave two of them
    at half speed on one core, while the balancer gives every worker as many connections)."""
    if cpus < 2 or how == "off":
        return False
    return how == "on" or (workers >= cpus and workers % cpus == 0)


def choose(cpus: list[int], taken: Iterable[int], age: int) -> int:
    """The core the fewest live siblings hold, the first in this worker's own order among
    equals (from ``age``, which gunicorn numbers from 1 per worker it starts: workers
    booting at once, seeing no sibling pinned yet, still spread)."""
    held = Counter(taken)
    start = age % len(cpus)
    order = cpus[start:] + cpus[:start]
    return min(order, key=lambda cpu: held[cpu])  # min keeps the first of equals


def pin(cpu: int) -> None:
    """Run this process's calling thread, and every thread it starts from now on, on
    ``cpu`` (call it before any other thread starts)."""
    os.sched_setaffinity(0, {cpu})
