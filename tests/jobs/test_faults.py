"""Kill things on purpose: no MLflow run is ever left RUNNING.

SIGKILL of the work horse: the worker parent ends the run FAILED and RQ retries the job into a
new run. SIGKILL of the worker's whole process group: nothing is left to report, so the
maintenance pass finds the lapsed heartbeat; like RQ's own tests we pass a future timestamp
instead of waiting the ~70 s for it to lapse.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from experiments.tracking import client_for
from jobs.maintain import maintain_once
from jobs.service import cancel_job, get_job, submit
from mlwb.services import Services
from mlwb.settings import Settings
from tests.factories import OPERATOR
from tests.jobs.conftest import WorkerProc, wait_until

pytestmark = pytest.mark.slow
LONG = {"epochs": 500, "patience": 200, "batch_size": 8, "device": "cpu"}


@pytest.fixture
def fresh_worker(job_settings: Settings, job_services: Services,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProc]:
    """A worker this test may kill."""
    job_services.redis.flushall()
    w = WorkerProc(job_settings, tmp_path_factory.mktemp("wlog") / "worker.log",
                   f"k-{os.getpid()}-{time.monotonic_ns()}")
    w.wait_ready(job_services.redis)
    yield w
    w.stop()


def _running(svc: Services, job_id: str, not_run: str | None = None) -> object:
    info = get_job(svc, OPERATOR, job_id)
    ok = info.status == "running" and info.run_id and info.run_id != not_run
    return info if ok else None


def test_sigkill_of_the_horse_fails_the_run_and_retries_into_a_new_run(
        fresh_worker: WorkerProc, job_services: Services) -> None:
    svc = job_services
    job = submit(svc, OPERATOR, "digits_cnn", LONG, retries=1)
    first = wait_until(lambda: _running(svc, job.id), what="first attempt running")
    horse = svc.redis  # the horse's pid is in the job's meta
    from rq.job import Job

    pid = Job.fetch(job.id, connection=horse, serializer="rq.serializers.JSONSerializer"
                    ).get_meta()["pid"]
    os.kill(pid, signal.SIGKILL)
    second = wait_until(lambda: _running(svc, job.id, first.run_id), timeout=120,  # type: ignore[attr-defined]
                        what="retry running in a new run")
    client = client_for(svc.settings)
    old = client.get_run(first.run_id)  # type: ignore[attr-defined]
    assert old.info.status == "FAILED"
    assert "signal 9" in old.data.tags["wb.end_reason"]
    assert "retried" in old.data.tags["wb.end_reason"]
    assert second.runs == [first.run_id, second.run_id]  # type: ignore[attr-defined]
    assert second.attempts == 2  # type: ignore[attr-defined]
    cancel_job(svc, OPERATOR, job.id)
    wait_until(lambda: client.get_run(second.run_id).info.status == "KILLED",  # type: ignore[attr-defined]
               timeout=30, what="second run KILLED")


def test_sigkill_of_the_worker_group_is_found_by_maintenance(
        fresh_worker: WorkerProc, job_services: Services) -> None:
    svc = job_services
    job = submit(svc, OPERATOR, "digits_cnn", LONG, retries=0)
    info = wait_until(lambda: _running(svc, job.id), what="job running")
    from rq.job import Job

    pid = Job.fetch(job.id, connection=svc.redis, serializer="rq.serializers.JSONSerializer"
                    ).get_meta()["pid"]
    fresh_worker.kill_group()
    os.kill(pid, signal.SIGKILL)  # the horse has a process group of its own
    client = client_for(svc.settings)
    assert client.get_run(info.run_id).info.status == "RUNNING"  # type: ignore[attr-defined]
    maintain_once(svc)  # heartbeat not lapsed yet: nothing to do
    assert get_job(svc, OPERATOR, job.id).status == "running"
    report = maintain_once(svc, now=time.time() + 600)  # as if the heartbeat lapsed
    assert report["abandoned"] == 1
    after = get_job(svc, OPERATOR, job.id)
    assert after.status == "failed"
    run = client.get_run(info.run_id)  # type: ignore[attr-defined]
    assert run.info.status == "FAILED"
    assert "abandoned" in run.data.tags["wb.end_reason"]


def test_reconcile_ends_a_run_whose_job_vanished(job_services: Services) -> None:
    """A run left RUNNING by a job that no longer exists is ended on the next pass."""
    from experiments.tracking import experiment_id

    svc = job_services
    client = client_for(svc.settings)
    run = client.create_run(experiment_id(client, svc.settings, "orphans"),
                            tags={"wb.job_id": "no-such-job"})
    report = maintain_once(svc, now=time.time() + 600)
    assert run.info.run_id in report["runs_ended"]
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "FAILED" and "gone" in ended.data.tags["wb.end_reason"]
