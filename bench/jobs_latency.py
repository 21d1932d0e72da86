"""Job latency with a warm worker: ours vs bare RQ, printed as ratios.

    .venv/bin/python bench/jobs_latency.py [--n 8] [--experiment wine_logreg]

Starts a private redis-server and one `wb worker` (warm: heavy imports done before the
first fork), then measures, per job, on the same worker:

- enqueue -> start: a bare RQ job (``queue.enqueue``) vs our ``jobs.service.submit`` (which
  validates, audits and records an event first); and, for ours, enqueue -> MLflow run open
  (our wrapper's own start-up: meta, log handler, data, run creation);
- enqueue -> end of the same training computation: a bare RQ job running
  ``jobs.tasks.fit_only`` (data, fit, metrics) vs our full job (the same plus one MLflow run
  with params, per-step metrics, artifacts, a logged and registered model and its hash).

Times come from the job records (RQ's created/started/ended stamps), medians over --n jobs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from rq.job import Job

from jobs.queues import SERIALIZER, queue
from jobs.service import submit, wait_for
from mlwb.redis_server import free_port, start_redis
from mlwb.services import Services
from mlwb.settings import Environment, Settings
from mlwb.users import operator

SECRET = "bench-secret-key-0123456789abcdef"


def seconds(a: datetime | None, b: datetime | None) -> float:
    """b - a in seconds (NaN when either is missing)."""
    return (b - a).total_seconds() if a and b else float("nan")


def wait_job(svc: Services, job_id: str, limit: float = 600) -> Job:
    """Poll until an RQ job is finished or failed."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = Job.fetch(job_id, connection=svc.redis, serializer=SERIALIZER)
        if job.get_status() in ("finished", "failed"):
            return job
        time.sleep(0.05)
    raise TimeoutError(job_id)


def main() -> int:
    """Run the benchmark and print medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="jobs of each kind")
    ap.add_argument("--experiment", default="wine_logreg")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    port = free_port()
    redis_proc = start_redis(tmp / "redis", port)
    settings = Settings(_env_file=None, env=Environment.test, data_dir=tmp / "data",  # type: ignore[call-arg]
                        redis_url=f"redis://127.0.0.1:{port}/0", secret_key=SECRET)
    svc = Services.from_settings(settings)
    env = {**os.environ, "WB_DATA_DIR": str(settings.data_dir),
           "REDIS_URL": settings.effective_redis_url, "WB_ENV": "test", "WB_SECRET_KEY": SECRET}
    worker = subprocess.Popen([sys.executable, "-m", "wb", "worker", "--name", "bench"], env=env,
                              stdout=open(tmp / "worker.log", "wb"), stderr=subprocess.STDOUT)
    who = operator("bench")
    try:
        while not svc.redis.exists("rq:worker:bench"):
            time.sleep(0.1)
        q = queue(svc.redis)
        # Warm both paths once (first MLflow store use, first model log), then measure.
        wait_for(svc, submit(svc, who, args.experiment, {}).id)
        wait_job(svc, q.enqueue("jobs.tasks.fit_only", args.experiment, {}).id)
        bare_start, bare_total, ours_start, ours_run, ours_total, sleep_start = \
            [], [], [], [], [], []
        for _ in range(args.n):
            j = wait_job(svc, q.enqueue("jobs.tasks.sleep_task", 0).id)
            sleep_start.append(seconds(j.enqueued_at, j.started_at))
            j = wait_job(svc, q.enqueue("jobs.tasks.fit_only", args.experiment, {}).id)
            bare_start.append(seconds(j.enqueued_at, j.started_at))
            bare_total.append(seconds(j.enqueued_at, j.ended_at))
            t0 = datetime.now().astimezone()
            info = submit(svc, who, args.experiment, {})
            done = wait_for(svc, info.id, poll=0.05)
            j = Job.fetch(info.id, connection=svc.redis, serializer=SERIALIZER)
            assert done.status == "finished", done.error
            run = __import__("experiments.tracking", fromlist=["client_for"]).client_for(
                settings).get_run(done.run_id)
            ours_start.append(seconds(t0, j.started_at.astimezone()))  # type: ignore[union-attr]
            ours_run.append(run.info.start_time / 1000 - t0.timestamp())
            ours_total.append(seconds(t0, j.ended_at.astimezone()))  # type: ignore[union-attr]
        med = statistics.median
        print(f"jobs latency, warm worker, n={args.n}, experiment={args.experiment} "
              "(medians, seconds)")
        print(f"  enqueue->start  bare RQ sleep(0) job      {med(sleep_start):8.3f}")
        print(f"  enqueue->start  bare RQ fit_only job      {med(bare_start):8.3f}")
        print(f"  submit ->start  ours (validate+audit)     {med(ours_start):8.3f}  "
              f"ratio {med(ours_start) / med(bare_start):5.2f}x")
        print(f"  submit ->MLflow run open (ours)           {med(ours_run):8.3f}")
        print(f"  enqueue->end    bare RQ fit_only          {med(bare_total):8.3f}")
        print(f"  submit ->end    ours (run+log+register)   {med(ours_total):8.3f}  "
              f"ratio {med(ours_total) / med(bare_total):5.2f}x")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
