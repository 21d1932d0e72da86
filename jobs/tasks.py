"""Job functions: plain module-level functions taking names and small JSON values.

They run in RQ's work horse; the worker parent built the process's services
(``jobs.context``) before forking.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from rq import get_current_job

from jobs import context
from jobs.lifecycle import append_log, attach_log, record_event

log = logging.getLogger(__name__)


class JobLogHandler(logging.Handler):
    """Copies log records of the running job into its live log in Redis."""

    def __init__(self, job_id: str) -> None:
        super().__init__(logging.INFO)
        self.job_id = job_id
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                            "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        """Append one formatted record (never raises into the training loop)."""
        try:
            append_log(context.services().redis, self.job_id, self.format(record))
        except Exception:
            self.handleError(record)


def train(experiment: str, params: dict[str, Any], options: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    """Train ``experiment`` with ``params`` as one MLflow run (the job's current run)."""
    from experiments import registry
    from experiments.runner import RunOptions, run_experiment

    options = options or {}
    job = get_current_job()
    if job is None:
        raise RuntimeError("jobs.tasks.train runs inside an RQ worker; use "
                           "experiments.runner.run_experiment directly otherwise")
    svc = context.services()
    meta = job.get_meta(refresh=True)
    attempt = int(meta.get("attempts", 0)) + 1
    meta["attempts"] = attempt
    meta["pid"] = os.getpid()  # the work horse (diagnostics; fault tests kill it)
    cfg = registry.validate(experiment, params)
    total = getattr(cfg, "epochs", None)
    meta["progress"] = {"stage": "loading data", "epoch": 0, "epochs": total}
    job.save_meta()
    handler = JobLogHandler(job.id)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    log.info("job %s attempt %d: %s %s on worker %s", job.id, attempt, experiment, params,
             job.worker_name)

    def started(run_id: str) -> None:
        meta["run_id"] = run_id
        meta.setdefault("runs", []).append(run_id)
        meta["progress"] = {"stage": "training", "epoch": 0, "epochs": total}
        job.save_meta()
        record_event(svc.sink, job.id, "running", run_id, attempt=attempt,
                     worker=job.worker_name)
        log.info("MLflow run %s", run_id)

    last_save = [0.0]

    def on_epoch(m: dict[str, float]) -> None:
        meta["progress"] = {"stage": "training", "epoch": int(m["epoch"]), "epochs": total,
                            "metrics": {k: round(v, 6) for k, v in m.items() if k != "epoch"}}
        log.info("epoch %d/%s %s", int(m["epoch"]), total, " ".join(
            f"{k}={v:.4f}" for k, v in m.items() if k != "epoch"))
        now = time.monotonic()
        if now - last_save[0] > 0.2 or int(m["epoch"]) == total:
            last_save[0] = now
            job.save_meta()

    opts = RunOptions(job_id=job.id, parent_run_id=options.get("parent_run_id"),
                      attempt=attempt, on_run_started=started, on_epoch=on_epoch,
                      tags={k: str(v) for k, v in options.get("tags", {}).items()})
    try:
        result = run_experiment(svc, experiment, params, opts)
    except BaseException as exc:
        log.error("job %s failed: %s: %s", job.id, type(exc).__name__, exc)
        meta["progress"] = {**meta.get("progress", {}), "stage": "failed"}
        meta["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        job.save_meta()
        record_event(svc.sink, job.id, "failed", meta.get("run_id"), error=meta["error"],
                     attempt=attempt)
        attach_log(job.id, meta.get("run_id"))
        if not job.retries_left:  # a retried trial is not over yet
            _sweep_hook(options, job.id)
        raise
    meta["progress"] = {**meta.get("progress", {}), "stage": "finished"}
    meta["result"] = result.to_dict()
    job.save_meta()
    log.info("job %s finished: %s", job.id, result.metrics)
    record_event(svc.sink, job.id, "finished", result.run_id, metrics=result.metrics,
                 version=result.version, model=result.model_name)
    attach_log(job.id, result.run_id)
    root.removeHandler(handler)
    _sweep_hook(options, job.id)
    return result.to_dict()


def _sweep_hook(options: dict[str, Any], job_id: str) -> None:
    sweep_id = options.get("sweep_id")
    if not sweep_id:
        return
    from jobs.sweeps import maybe_finish

    try:
        maybe_finish(context.services(), sweep_id, ending_job_id=job_id)
    except Exception:
        log.warning("could not check sweep %s", sweep_id, exc_info=True)


def fit_only(experiment: str, params: dict[str, Any]) -> dict[str, float]:
    """The bare computation of a training job (data, fit, test metrics; no MLflow, no
    registry, no events): the baseline ``bench/jobs_latency.py`` compares our wrapper with."""
    from experiments import registry
    from experiments.data import load_frame, make_split
    from experiments.registry import FitContext
    from experiments.runner import evaluate

    exp = registry.get(experiment)
    cfg = registry.validate(experiment, params)
    frame, target, name, version = load_frame(cfg.dataset, exp.data, None)
    split = make_split(frame, target, exp.task, cfg.test_size, cfg.seed, name, version)
    scores, _ = evaluate(exp.fit(cfg, split, FitContext()), split)
    return scores


def sleep_task(seconds: float) -> float:
    """A job that only sleeps (benchmarks and tests of the job machinery)."""
    time.sleep(seconds)
    return seconds
