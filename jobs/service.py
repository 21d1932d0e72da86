"""The one way to submit, list, inspect and cancel jobs: the CLI, the API and the workbench
all call these functions, so validation, the role check and the audit entry are the same.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rq.callbacks import Callback
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus, Retry

from jobs import defaults
from jobs.lifecycle import FINAL, read_log, record_event
from jobs.queues import SERIALIZER, gpu_workers, queue
from mlwb.audit import audit
from mlwb.errors import Conflict, NotFound, Unprocessable
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.users import Principal

# RQ's statuses as people read them.
STATUS_NAMES = {
    JobStatus.QUEUED: "queued", JobStatus.DEFERRED: "queued", JobStatus.SCHEDULED: "queued",
    JobStatus.STARTED: "running", JobStatus.FINISHED: "finished", JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "cancelled", JobStatus.CANCELED: "cancelled",
}


class JobOptions(BaseModel):
    """Options of a submission besides the experiment's own parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue: Literal["auto", "cpu", "gpu"] = "auto"
    timeout: int = Field(defaults.JOB_TIMEOUT, ge=5, le=defaults.MAX_JOB_TIMEOUT)
    retries: int = Field(defaults.RETRIES, ge=0, le=10)


@dataclass
class JobInfo:
    """What a person sees of a job."""

    id: str
    experiment: str
    status: str
    queue: str
    params: dict[str, Any]
    submitted_by: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    run_id: str | None = None
    runs: list[str] = field(default_factory=list)
    attempts: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    result: dict[str, Any] | None = None
    sweep_id: str | None = None

    @property
    def done(self) -> bool:
        """True once the job can no longer change."""
        return self.status in ("finished", "failed", "cancelled")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _iso(value: datetime | None) -> str | None:
    return value.replace(tzinfo=value.tzinfo or UTC).isoformat() if value else None


def info(job: Job) -> JobInfo:
    """A JobInfo from an RQ job."""
    meta = job.get_meta(refresh=False)
    status = job.get_status(refresh=False)
    error = meta.get("error")
    if status in (JobStatus.FAILED, JobStatus.STOPPED) and not error:
        latest = job.latest_result()
        error = (latest.exc_string or "").strip().splitlines()[-1:] if latest else None
        error = error[0] if error else ("cancelled" if status == JobStatus.STOPPED else None)
    args = list(job.args or [])
    return JobInfo(
        id=job.id, experiment=str(args[0]) if args else str(job.func_name),
        status=STATUS_NAMES.get(status, str(status)), queue=job.origin,
        params=dict(args[1]) if len(args) > 1 else {}, submitted_by=meta.get("submitted_by"),
        created_at=_iso(job.created_at), started_at=_iso(job.started_at),
        ended_at=_iso(job.ended_at), run_id=meta.get("run_id"), runs=meta.get("runs", []),
        attempts=int(meta.get("attempts", 0)), progress=meta.get("progress", {}),
        error=error, result=meta.get("result"), sweep_id=meta.get("sweep_id"))


def _pick_queue(services: Services, experiment: Any, cfg: Any, wanted: str) -> str:
    if wanted == "cpu" or not experiment.uses_gpu:
        return defaults.CPU_QUEUE
    if wanted == "gpu" or str(getattr(cfg, "device", "auto")).startswith("cuda"):
        return defaults.GPU_QUEUE
    if getattr(cfg, "device", "auto") == "cpu":
        return defaults.CPU_QUEUE
    return defaults.GPU_QUEUE if gpu_workers(services.redis) else defaults.CPU_QUEUE


def prepare(services: Services, experiment: str,
            params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Validate ``params`` now (not twenty minutes into a run); pin the data set version."""
    from experiments import registry
    from mlwb.datasets import DatasetStore

    exp = registry.get(experiment)
    cfg = registry.validate(experiment, params)
    clean = cfg.model_dump(mode="json", exclude_unset=True)
    if cfg.dataset and not cfg.dataset.startswith("builtin:"):
        dv = DatasetStore(services.settings, services.engine, services.sink).resolve(
            cfg.dataset)
        clean["dataset"] = dv.ref  # the run must use exactly this version
    return exp, clean


def submit(services: Services, principal: Principal, experiment: str, params: dict[str, Any],
           *, wait: bool = False, queue_name: str = "auto", timeout: int | None = None,
           retries: int | None = None, ip: str | None = None, wait_seconds: float = 3600,
           extra: dict[str, Any] | None = None) -> JobInfo:
    """Validate, enqueue and audit one training job; with ``wait``, return when it ends."""
    principal.require(Role.scientist, Scope.jobs, "submitting jobs")
    try:
        opts = JobOptions(queue=queue_name, timeout=timeout or defaults.JOB_TIMEOUT,  # type: ignore[arg-type]
                          retries=defaults.RETRIES if retries is None else retries)
    except ValidationError as exc:
        err = exc.errors()[0]
        fld = ".".join(str(p) for p in err["loc"])
        raise Unprocessable(f"bad job option {fld}: {err['msg']} (got {err.get('input')!r})",
                            field=fld) from None
    exp, clean = prepare(services, experiment, params)
    from experiments import registry

    qname = _pick_queue(services, exp, registry.validate(experiment, clean), opts.queue)
    extra = extra or {}
    job = queue(services.redis, qname).enqueue_call(
        "jobs.tasks.train", args=(experiment, clean, extra), timeout=opts.timeout,
        result_ttl=defaults.RESULT_TTL, failure_ttl=defaults.FAILURE_TTL,
        retry=Retry(max=opts.retries) if opts.retries else None,
        on_failure=Callback("jobs.lifecycle.on_failure"),
        on_stopped=Callback("jobs.lifecycle.on_stopped"),
        meta={"submitted_by": principal.actor, "sweep_id": extra.get("sweep_id"),
              "progress": {"stage": "queued"}},
        description=f"train {experiment}")
    services.redis.zadd(defaults.JOB_INDEX_KEY, {job.id: time.time()})
    audit(services.sink, principal.actor, "job.submitted", f"job:{job.id}",
          after={"experiment": experiment, "params": clean, "queue": qname,
                 "timeout": opts.timeout, "retries": opts.retries}, ip=ip)
    record_event(services.sink, job.id, "queued", None, experiment=experiment, params=clean,
                 queue=qname)
    if wait:
        return wait_for(services, job.id, wait_seconds)
    return info(job)


def _fetch(services: Services, job_id: str) -> Job:
    try:
        return Job.fetch(job_id, connection=services.redis, serializer=SERIALIZER)
    except (NoSuchJobError, ValueError):  # ValueError: not even a valid job id
        raise NotFound(f"no job {job_id!r} (finished jobs are kept {defaults.RESULT_TTL // 86400}"
                       " days); see `wb jobs list`", job_id=job_id) from None


def get_job(services: Services, principal: Principal, job_id: str) -> JobInfo:
    """One job."""
    principal.require(Role.viewer, Scope.read, "reading jobs")
    return info(_fetch(services, job_id))


def list_jobs(services: Services, principal: Principal, status: str | None = None,
              limit: int = 50) -> list[JobInfo]:
    """The newest jobs first, optionally only those with ``status``."""
    principal.require(Role.viewer, Scope.read, "reading jobs")
    if status and status not in set(STATUS_NAMES.values()):
        names = ", ".join(sorted(set(STATUS_NAMES.values())))
        raise Unprocessable(f"status must be one of {names}",
                            field="status")
    ids = [i.decode() for i in services.redis.zrevrange(  # type: ignore[union-attr]
        defaults.JOB_INDEX_KEY, 0, 2000)]
    jobs = Job.fetch_many(ids, connection=services.redis, serializer=SERIALIZER)
    gone = [i for i, j in zip(ids, jobs, strict=True) if j is None]
    if gone:
        services.redis.zrem(defaults.JOB_INDEX_KEY, *gone)
    out = []
    for job in jobs:
        if job is None:
            continue
        item = info(job)
        if status is None or item.status == status:
            out.append(item)
        if len(out) >= limit:
            break
    return out


def wait_for(services: Services, job_id: str, seconds: float = 3600,
             poll: float = 0.5) -> JobInfo:
    """Poll until the job is done or ``seconds`` pass; returns its latest state."""
    deadline = time.monotonic() + seconds
    while True:
        job = _fetch(services, job_id)
        current = info(job)
        if current.done or time.monotonic() > deadline:
            return current
        time.sleep(poll)


def cancel_job(services: Services, principal: Principal, job_id: str,
               ip: str | None = None) -> JobInfo:
    """Cancel a queued job, or stop a running one (its run ends KILLED within seconds)."""
    principal.require(Role.scientist, Scope.jobs, "cancelling jobs")
    job = _fetch(services, job_id)
    status = job.get_status()
    if status in FINAL:
        raise Conflict(f"job {job_id} already ended ({STATUS_NAMES[status]}); nothing to cancel",
                       job_id=job_id)
    before = STATUS_NAMES.get(status, str(status))
    if status == JobStatus.STARTED:
        try:
            send_stop_job_command(services.redis, job_id, serializer=SERIALIZER)
        except InvalidJobOperation:
            job.cancel()
    else:
        job.cancel()
        record_event(services.sink, job_id, "cancelled", job.get_meta().get("run_id"),
                     reason="cancelled while queued")
    audit(services.sink, principal.actor, "job.cancelled", f"job:{job_id}",
          before={"status": before}, after={"status": "cancelled"}, ip=ip)
    if status == JobStatus.STARTED:
        return wait_for(services, job_id, seconds=15, poll=0.2)
    return info(_fetch(services, job_id))


def job_log(services: Services, principal: Principal, job_id: str) -> list[str]:
    """The job's log lines (live from Redis; after expiry, from its run's artifact)."""
    principal.require(Role.viewer, Scope.read, "reading job logs")
    lines = read_log(services.redis, job_id)
    if lines:
        return lines
    job = _fetch(services, job_id)
    run_id = job.get_meta().get("run_id")
    if not run_id:
        return []
    from experiments.tracking import client_for

    try:
        import os

        import mlflow.artifacts

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        text = mlflow.artifacts.load_text(
            f"{client_for(services.settings).get_run(run_id).info.artifact_uri}/logs/job.log")
    except Exception:
        return []
    return text.splitlines()
