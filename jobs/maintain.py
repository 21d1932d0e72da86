"""The maintenance loop (`wb jobs maintain`): abandoned jobs, orphan runs, finished sweeps,
and aliases moved in MLflow behind the promotion record's back.

A worker whose whole process group was SIGKILLed stops heartbeating; RQ lets the job's
heartbeat lapse ``JOB_MONITORING_INTERVAL + 60`` s after the last one, and this loop looks
every ``MAINTENANCE_INTERVAL`` s, so such a job is failed (or retried) and its run ended
FAILED within about 10 + 60 + 15 = 85 s, under the 2-minute bound.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rq.registry import StartedJobRegistry, clean_registries

from jobs import context, defaults, lifecycle, sweeps
from jobs.queues import all_queues
from mlwb.alias_drift import check_all
from mlwb.errors import StoreError
from mlwb.services import Services

log = logging.getLogger(__name__)


def maintain_once(services: Services, now: float | None = None) -> dict[str, Any]:
    """One pass. ``now`` in the future fakes lapsed heartbeats (tests), as RQ's tests do."""
    context.set_services(services)
    abandoned = 0
    for q in all_queues(services.redis):
        started = StartedJobRegistry(queue=q)
        abandoned += len(started.get_expired_job_ids(now))
        started.cleanup(timestamp=now)
        clean_registries(q)
    ended = lifecycle.reconcile_runs(now)
    finished = sweeps.check_open(services)
    # Aliases moved in MLflow directly: recorded, audited, and not served until confirmed.
    try:
        drift = len(check_all(services))
    except StoreError as exc:
        log.warning("maintenance: alias drift not checked: %s", exc.message)
        drift = 0
    return {"abandoned": abandoned, "runs_ended": ended, "sweeps_finished": finished,
            "alias_drift_open": drift}


def maintain_forever(services: Services, interval: float = defaults.MAINTENANCE_INTERVAL,
                     passes: int | None = None) -> None:
    """Run :func:`maintain_once` every ``interval`` seconds (forever unless ``passes``)."""
    done = 0
    while passes is None or done < passes:
        try:
            report = maintain_once(services)
            if report["abandoned"] or report["runs_ended"] or report["sweeps_finished"]:
                log.info("maintenance: %s", report)
        except Exception:
            log.exception("maintenance pass failed; retrying in %s s", interval)
        done += 1
        if passes is None or done < passes:
            time.sleep(interval)
