"""Job lifecycle bookkeeping: events, logs, and ending MLflow runs that a death left open.

Who ends a run, by how the job ended:

- finished / raised (timeout included): the work horse itself (``experiments.runner``);
- horse SIGKILLed: the worker parent (:func:`on_horse_killed`), then RQ retries or fails it;
- cancelled while running: the worker parent via RQ's stopped callback (:func:`on_stopped`);
- worker's whole process group killed: ``wb jobs maintain`` finds the lapsed heartbeat and
  RQ calls :func:`on_failure` with ``AbandonedJobError``;
- anything else that slipped through: :func:`reconcile_runs`, on every maintenance pass.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from rq.job import Job, JobStatus

from jobs import context, defaults
from jobs.queues import SERIALIZER
from mlwb.events import EventSink

log = logging.getLogger(__name__)

FINAL = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def record_event(sink: EventSink, job_id: str, status: str, run_id: str | None = None,
                 **payload: Any) -> None:
    """One row in the lake's ``job_events`` table (never raises: history is best effort)."""
    try:
        sink.record("job_events", {"job_id": job_id, "run_id": run_id, "status": status,
                                   "payload": payload or None})
    except Exception:
        log.warning("could not record job event %s for %s", status, job_id, exc_info=True)


def append_log(client: redis.Redis, job_id: str, line: str) -> None:
    """Append a line to the job's live log (capped; kept as long as failed jobs)."""
    key = defaults.LOG_KEY.format(job_id=job_id)
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, line.encode())
    pipe.ltrim(key, -defaults.LOG_LINES, -1)
    pipe.expire(key, defaults.FAILURE_TTL)
    pipe.execute()


def read_log(client: redis.Redis, job_id: str) -> list[str]:
    """The job's live log lines."""
    key = defaults.LOG_KEY.format(job_id=job_id)
    return [b.decode(errors="replace") if isinstance(b, bytes) else str(b)
            for b in client.lrange(key, 0, -1)]  # type: ignore[union-attr]


def attach_log(job_id: str, run_id: str | None) -> None:
    """Store the job's log as the run artifact ``logs/job.log`` (best effort)."""
    if not run_id:
        return
    svc = context.services()
    try:
        from experiments.tracking import client_for

        text = "\n".join(read_log(svc.redis, job_id)) + "\n"
        client_for(svc.settings).log_text(run_id, text, "logs/job.log")
    except Exception:
        log.warning("could not attach the log of job %s to run %s", job_id, run_id,
                    exc_info=True)


def end_job_run(job: Job, status: str, reason: str, event: str) -> str | None:
    """End the job's current run (if still RUNNING) and record why; returns the run id."""
    svc = context.services()
    meta = job.get_meta(refresh=True)
    run_id = meta.get("run_id")
    append_log(svc.redis, job.id, f"{time.strftime('%H:%M:%S')} {event}: {reason}")
    if run_id:
        from experiments.tracking import client_for, end_run

        try:
            if end_run(client_for(svc.settings), run_id, status, reason):
                attach_log(job.id, run_id)
        except Exception:
            log.warning("could not end run %s of job %s", run_id, job.id, exc_info=True)
    record_event(svc.sink, job.id, event, run_id, reason=reason)
    return run_id


def _retry_note(job: Job) -> str:
    left = job.retries_left or 0
    return f"; job will be retried ({left} retr{'y' if left == 1 else 'ies'} left)" if left \
        else "; no retries left, job failed"


def on_horse_killed(job: Job, retpid: int | None, ret_val: int | None, rusage: Any) -> None:
    """Worker parent: the horse died without reporting (e.g. SIGKILL, OOM)."""
    import os

    sig = os.WTERMSIG(ret_val) if ret_val and os.WIFSIGNALED(ret_val) else None
    why = f"work horse died (signal {sig})" if sig else f"work horse exited ({ret_val})"
    end_job_run(job, "FAILED", why + _retry_note(job), "horse_killed")


def on_stopped(job: Job, connection: redis.Redis) -> None:
    """RQ stopped callback (worker parent): the job was cancelled while running."""
    end_job_run(job, "KILLED", "cancelled by request", "cancelled")


def on_failure(job: Job, connection: redis.Redis, exc_type: Any, exc_value: Any,
               traceback: Any) -> None:
    """RQ failure callback: in the horse after a raise, or in the maintainer for a job whose
    worker vanished (AbandonedJobError)."""
    from rq.exceptions import AbandonedJobError

    if isinstance(exc_value, AbandonedJobError) or exc_type is AbandonedJobError:
        end_job_run(job, "FAILED", "abandoned: its worker stopped heartbeating (killed or "
                    "lost)" + _retry_note(job), "abandoned")


def reconcile_runs(now: float | None = None) -> list[str]:
    """End RUNNING runs whose job no longer runs them; returns the run ids ended."""
    from experiments.tracking import client_for, end_run

    svc = context.services()
    client = client_for(svc.settings)
    now = time.time() if now is None else now
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    runs = client.search_runs(ids, "attributes.status = 'RUNNING'", max_results=1000)
    ended = []
    for run in runs:
        job_id = run.data.tags.get("wb.job_id")
        age = now - run.info.start_time / 1000
        sweep_id = run.data.tags.get("wb.sweep_id")
        if not job_id and sweep_id and age > defaults.ORPHAN_RUN_GRACE and not svc.redis.exists(
                defaults.SWEEP_KEY.format(sweep_id=sweep_id)):
            # A sweep's parent run whose record Redis lost (hard kill): nobody can close it.
            if end_run(client, run.info.run_id, "FAILED", "the sweep's record was lost"):
                ended.append(run.info.run_id)
            continue
        if not job_id:
            continue
        try:
            job = Job.fetch(job_id, connection=svc.redis, serializer=SERIALIZER)
            status = job.get_status()
            current = job.get_meta(refresh=False).get("run_id")
        except Exception:
            job, status, current = None, None, None
        if status == JobStatus.STARTED and (current == run.info.run_id
                                            or age < defaults.ORPHAN_RUN_GRACE):
            continue
        if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED) and \
                current != run.info.run_id and age < defaults.ORPHAN_RUN_GRACE:
            continue
        reason = (f"its job is {status.value if status else 'gone'}; the run was left open "
                  "by a process that died")
        final = "KILLED" if status in (JobStatus.STOPPED, JobStatus.CANCELED) else "FAILED"
        if end_run(client, run.info.run_id, final, reason):
            ended.append(run.info.run_id)
            record_event(svc.sink, job_id, "run_reconciled", run.info.run_id, reason=reason)
    return ended
