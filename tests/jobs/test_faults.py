"""Kill things on purpose: no MLflow run is ever left RUNNING.

SIGKILL of the worker's whole process group: nothing is left to report, so the maintenance
pass finds the lapsed heartbeat; like RQ's own tests we pass a future timestamp instead of
waiting the ~70 s for it to lapse. (SIGKILL of the work horse alone is in
test_worker_jobs.py: the module's worker survives it.)
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from experiments.tracking import client_for
from jobs.maintain import maintain_once
from jobs.service import get_job, submit
from mlwb.services import Services
from mlwb.settings import Settings
from tests.factories import OPERATOR
from tests.jobs.conftest import WorkerProc, wait_until

pytestmark = pytest.mark.slow
LONG = {"epochs": 500, "patience": 200, "batch_size": 8, "device": "cpu"}


@pytest.fixture
def fresh_worker(job_settings: Settings, job_services: Services,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProc]:
    """A worker this test may kill, bound to "GPU" 0 (on a CPU box its jobs run on CPU)."""
    w = WorkerProc(job_settings, tmp_path_factory.mktemp("wlog") / "worker.log",
                   f"k-{os.getpid()}-{time.monotonic_ns()}", "--gpu", "0")
    w.wait_ready(job_services.redis)
    yield w
    w.stop()


def _running(svc: Services, job_id: str, not_run: str | None = None) -> object:
    info = get_job(svc, OPERATOR, job_id)
    ok = info.status == "running" and info.run_id and info.run_id != not_run
    return info if ok else None


def test_sigkill_of_the_worker_group_is_found_by_maintenance(
        fresh_worker: WorkerProc, job_services: Services) -> None:
    svc = job_services
    job = submit(svc, OPERATOR, "digits_cnn", {**LONG, "device": "auto"}, retries=0)
    assert job.queue == "wb-gpu"  # a GPU worker is up, so torch jobs go to the GPU queue
    info = wait_until(lambda: _running(svc, job.id), what="job running")
    # `--gpu 0` bound the worker (and so the horse) before torch touched CUDA.
    assert client_for(svc.settings).get_run(info.run_id).data.tags[  # type: ignore[attr-defined]
        "wb.cuda_visible_devices"] == "0"
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
    parent = client.create_run(experiment_id(client, svc.settings, "orphans"),
                               tags={"wb.sweep_id": "lost-sweep"})
    report = maintain_once(svc, now=time.time() + 600)
    assert {run.info.run_id, parent.info.run_id} <= set(report["runs_ended"])
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "FAILED" and "gone" in ended.data.tags["wb.end_reason"]
    assert "lost" in client.get_run(parent.info.run_id).data.tags["wb.end_reason"]

