"""Sweeps: grid and random search over declared ranges, one job per trial, grouped under a
parent MLflow run that ends when its last trial ends and records the best trial.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from rq.job import Job

from jobs import defaults
from jobs.lifecycle import FINAL
from jobs.queues import SERIALIZER
from mlwb.audit import audit
from mlwb.errors import Unprocessable
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.users import Principal

# Most trials one sweep may enqueue.
MAX_TRIALS = 200


@dataclass
class SweepInfo:
    """A sweep: its parent run, trial jobs and (once over) the best trial."""

    id: str
    experiment: str
    parent_run_id: str
    metric: str
    job_ids: list[str]
    status: str = "running"
    best_run_id: str | None = None
    best_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _ranges(experiment: str, ranges: dict[str, tuple[float, float]] | None
            ) -> dict[str, tuple[float, float, bool, bool]]:
    """(lo, hi, log, integer) of the parameters random search samples."""
    from experiments import registry

    params = {p["name"]: p for p in registry.describe(experiment)}
    out = {}
    wanted = ranges or {n: (p["min"], p["max"]) for n, p in params.items() if p["log"]}
    for name, (lo, hi) in wanted.items():
        if name not in params:
            raise Unprocessable(f"{name} is not a parameter of {experiment}", field=name)
        p = params[name]
        if lo is None or hi is None or not lo < hi:
            raise Unprocessable(f"{name}: give a range lo:hi with lo < hi", field=name)
        integer = p["type"] == "int"
        log = bool(p["log"]) and lo > 0
        out[name] = (float(lo), float(hi), log, integer)
    return out


def plan(experiment: str, grid: dict[str, list[Any]] | None = None, n_random: int = 0,
         fixed: dict[str, Any] | None = None,
         ranges: dict[str, tuple[float, float]] | None = None, seed: int = 0
         ) -> list[dict[str, Any]]:
    """The trials' params: the grid's product, or ``n_random`` draws (grid values and ranges)."""
    grid = grid or {}
    fixed = fixed or {}
    size = n_random or math.prod(len(v) for v in grid.values())
    if size > MAX_TRIALS:  # checked before anything is generated
        raise Unprocessable(f"{size} trials; at most {MAX_TRIALS} per sweep", field="grid")
    combos = [dict(zip(grid, vals, strict=True)) for vals in itertools.product(*grid.values())]
    if not n_random:
        trials = [{**fixed, **c} for c in combos]
    else:
        rng = random.Random(seed)
        space = _ranges(experiment, ranges)
        trials = []
        for _ in range(n_random):
            t = {**fixed, **rng.choice(combos)}
            for name, (lo, hi, log, integer) in space.items():
                if name in grid or name in fixed:
                    continue
                v = (math.exp(rng.uniform(math.log(lo), math.log(hi))) if log
                     else rng.uniform(lo, hi))
                t[name] = round(v) if integer else float(f"{v:.6g}")
            trials.append(t)
    if not trials or trials == [{}]:
        raise Unprocessable("a sweep needs --grid NAME=V1,V2 and/or --random N", field="grid")
    if len(trials) > MAX_TRIALS:
        raise Unprocessable(f"{len(trials)} trials; at most {MAX_TRIALS} per sweep", field="grid")
    return trials


def _key(sweep_id: str) -> str:
    return defaults.SWEEP_KEY.format(sweep_id=sweep_id)


def start_sweep(services: Services, principal: Principal, experiment: str,
                trials: list[dict[str, Any]], *, metric: str | None = None,
                ip: str | None = None, **job_options: Any) -> SweepInfo:
    """Validate every trial, open the parent run, then enqueue one job per trial."""
    from experiments import registry, tracking
    from jobs.service import prepare, submit

    principal.require(Role.scientist, Scope.jobs, "submitting sweeps")
    exp = registry.get(experiment)
    for i, t in enumerate(trials):
        try:
            prepare(services, experiment, t)
        except Unprocessable as exc:
            raise Unprocessable(f"trial {i + 1} {t}: {exc.message}", **exc.context) from None
    metric = metric or ("test_accuracy" if exp.task == "classification" else "test_rmse")
    sweep_id = uuid.uuid4().hex[:12]
    client = tracking.client_for(services.settings)
    exp_id = tracking.experiment_id(client, services.settings, experiment)
    parent = client.create_run(exp_id, run_name=f"sweep-{sweep_id}", tags={
        "wb.sweep_id": sweep_id, "wb.sweep_trials": str(len(trials)),
        "wb.sweep_metric": metric, "wb.experiment": experiment})
    parent_id = parent.info.run_id
    job_ids = []
    for t in trials:
        job = submit(services, principal, experiment, t, ip=ip, extra={
            "parent_run_id": parent_id, "sweep_id": sweep_id,
            "tags": {"wb.sweep_id": sweep_id}}, **job_options)
        job_ids.append(job.id)
    services.redis.hset(_key(sweep_id), mapping={
        "experiment": experiment, "parent_run_id": parent_id, "metric": metric,
        "job_ids": json.dumps(job_ids)})
    services.redis.sadd(defaults.OPEN_SWEEPS_KEY, sweep_id)
    audit(services.sink, principal.actor, "sweep.submitted", f"sweep:{sweep_id}",
          after={"experiment": experiment, "trials": len(trials), "jobs": job_ids,
                 "parent_run_id": parent_id}, ip=ip)
    return SweepInfo(sweep_id, experiment, parent_id, metric, job_ids)


def get_sweep(services: Services, sweep_id: str) -> SweepInfo:
    """A sweep's state from Redis (and its parent run once over)."""
    from mlwb.errors import NotFound

    raw = {k.decode(): v.decode() for k, v in  # type: ignore[union-attr]
           services.redis.hgetall(_key(sweep_id)).items()}
    if not raw:
        raise NotFound(f"no sweep {sweep_id!r}", sweep_id=sweep_id)
    return SweepInfo(sweep_id, raw["experiment"], raw["parent_run_id"], raw["metric"],
                     json.loads(raw["job_ids"]), raw.get("status", "running"),
                     raw.get("best_run_id") or None,
                     float(raw["best_value"]) if raw.get("best_value") else None)


def maybe_finish(services: Services, sweep_id: str, ending_job_id: str | None = None) -> bool:
    """End the parent run once every trial has ended (``ending_job_id`` is ending now)."""
    from experiments import tracking

    sweep = get_sweep(services, sweep_id)
    if sweep.status != "running":
        return False
    jobs = Job.fetch_many(sweep.job_ids, connection=services.redis, serializer=SERIALIZER)
    for jid, job in zip(sweep.job_ids, jobs, strict=True):
        if jid == ending_job_id or job is None:
            continue
        if job.get_status(refresh=False) not in FINAL:
            return False
    if not services.redis.set(f"{_key(sweep_id)}:lock", "1", nx=True, ex=3600):
        return False
    client = tracking.client_for(services.settings)
    children = client.search_runs(
        [client.get_run(sweep.parent_run_id).info.experiment_id],
        f"tags.mlflow.parentRunId = '{sweep.parent_run_id}' and attributes.status = 'FINISHED'",
        max_results=MAX_TRIALS * 11)
    lower = sweep.metric.endswith(("rmse", "mae", "loss"))
    scored = [(r.data.metrics[sweep.metric], r) for r in children if sweep.metric in
              r.data.metrics]
    best = (min if lower else max)(scored, key=lambda s: s[0]) if scored else None
    if best is not None:
        value, run = best
        client.set_tag(sweep.parent_run_id, "wb.best_run_id", run.info.run_id)
        client.set_tag(sweep.parent_run_id, "wb.best_params", run.data.tags.get("wb.config", ""))
        client.log_metric(sweep.parent_run_id, f"best_{sweep.metric}", value)
        services.redis.hset(_key(sweep_id), mapping={"best_run_id": run.info.run_id,
                                                     "best_value": str(value)})
    client.set_tag(sweep.parent_run_id, "wb.trials_finished", str(len(children)))
    tracking.end_run(client, sweep.parent_run_id, "FINISHED" if best else "FAILED",
                     None if best else "no trial finished")
    services.redis.hset(_key(sweep_id), "status", "finished" if best else "failed")
    services.redis.srem(defaults.OPEN_SWEEPS_KEY, sweep_id)
    return True


def check_open(services: Services) -> list[str]:
    """Finish every open sweep whose trials have all ended (the maintainer's pass)."""
    done = []
    for raw in services.redis.smembers(defaults.OPEN_SWEEPS_KEY):
        sid = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            if maybe_finish(services, sid):
                done.append(sid)
        except Exception:
            continue
    return done
