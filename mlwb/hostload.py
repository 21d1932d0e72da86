"""How busy the host's CPUs were with other work: what the ingest's merges wait for.

Compaction is maintenance: a merge of a few hundred thousand rows costs about a second of
CPU, and on a small box serving predictions that second comes out of the requests being
served. The ingest reads the host's CPU time (``/proc/stat``) between two maintenance
passes, less its own, and lets merges wait while the rest of the host kept the CPUs busy.
"""

from __future__ import annotations

import os
from pathlib import Path

STAT = Path("/proc/stat")


def _host_times() -> tuple[float, float] | None:
    """Seconds of CPU time the host spent busy and in all, over all CPUs, since boot;
    None where ``/proc/stat`` is not there (macOS) or not readable."""
    try:
        with STAT.open() as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    tick = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / tick, sum(ticks) / tick


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


class HostLoad:
    """The share of the host's CPU time that other processes used since the last call."""

    def __init__(self) -> None:
        self._last: tuple[float, float, float] | None = None

    def others_busy(self) -> float | None:
        """Between 0 and 1: the CPU time everything but this process used since the last
        call, over all the CPU time there was; None on the first call or where the host's
        times cannot be read."""
        host = _host_times()
        if host is None:
            return None
        now = (*host, _own_seconds())
        last, self._last = self._last, now
        if last is None or now[1] <= last[1]:
            return None
        busy = (now[0] - last[0]) - (now[2] - last[2])
        return min(max(busy / (now[1] - last[1]), 0.0), 1.0)
