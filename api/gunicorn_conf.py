"""gunicorn settings shared by `wb up`, `wb api` and docker-compose."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Prometheus metrics are per process; gunicorn workers share this folder so /metrics adds
# them up. It is emptied when the master starts, never while workers run.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def on_starting(server: Any) -> None:
    """Empty the metrics folder once, before any worker forks."""
    if _metrics_dir:
        path = Path(_metrics_dir)
        path.mkdir(parents=True, exist_ok=True)
        for f in path.glob("*.db"):
            f.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Mark a dead worker's live gauges as gone."""
    if _metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
