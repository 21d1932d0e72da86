"""Real Redis, a real `wb worker` process, a real MLflow store: submit -> run -> version."""

from __future__ import annotations

import os
import signal
from typing import Any

import mlflow
import numpy as np
import pytest
from flask.testing import FlaskClient
from rq.job import Job

from experiments.data import load_builtin
from experiments.tracking import client_for, tracking
from jobs.queues import SERIALIZER
from jobs.service import cancel_job, get_job, submit, wait_for
from jobs.sweeps import get_sweep, plan, start_sweep
from mlwb.registry import expected_hash
from mlwb.roles import Role, Scope
from mlwb.services import Services
from tests.factories import OPERATOR, land, make_token, make_user
from tests.jobs.conftest import WorkerProc, wait_until

pytestmark = pytest.mark.slow
# A job long enough to catch while running: ~1-3 s per epoch on 2 CPU cores.
LONG = {"epochs": 500, "patience": 200, "batch_size": 8, "device": "cpu"}


def running_with_run(svc: Services, job_id: str, not_run: str | None = None) -> Any:
    info = get_job(svc, OPERATOR, job_id)
    ok = info.status == "running" and info.run_id and info.run_id != not_run
    return info if ok else None


def test_submit_trains_logs_and_registers(worker: WorkerProc, job_services: Services) -> None:
    svc = job_services
    info = submit(svc, OPERATOR, "digits_mlp", {"epochs": "6", "device": "cpu", "seed": 3},
                  wait=True, wait_seconds=240)
    assert info.status == "finished", info.error
    assert info.progress["epoch"] == info.progress["epochs"] == 6
    client = client_for(svc.settings)
    run = client.get_run(info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["wb.job_id"] == info.id
    assert run.data.tags["wb.device"] == "cpu"
    assert run.data.tags["wb.dataset_ref"].startswith("builtin:digits@")
    assert run.data.params["epochs"] == "6" and run.data.params["seed"] == "3"
    train = [m.value for m in client.get_metric_history(info.run_id, "train_loss")]
    steps = [m.step for m in client.get_metric_history(info.run_id, "val_loss")]
    assert len(train) == 6 and steps == [1, 2, 3, 4, 5, 6]
    assert train[-1] < train[0] / 2  # the loss went down
    artifacts = {a.path for a in client.list_artifacts(info.run_id)}
    assert {"reference", "plots", "logs"} <= artifacts
    assert "epoch 6/6" in mlflow.artifacts.load_text(f"{run.info.artifact_uri}/logs/job.log")
    # The registered version loads through pyfunc and predicts on named columns.
    version = info.result["version"]  # type: ignore[index]
    assert expected_hash(svc.engine, "digits_mlp", version)
    with tracking(svc.settings):
        model = mlflow.pyfunc.load_model(f"models:/digits_mlp/{version}")
    frame = load_builtin("digits").head(40)
    pred = model.predict(frame.drop(columns=["target"]))
    assert (np.asarray(pred) == frame["target"].to_numpy()).mean() > 0.8
    land(svc)
    events = [r[0] for r in svc.lake.query(
        "SELECT status FROM job_events WHERE job_id = ? ORDER BY ts", [info.id])]
    assert events == ["queued", "running", "finished"]
    actions = [r[0] for r in svc.lake.query("SELECT action FROM audit WHERE target = ?",
                                            [f"job:{info.id}"])]
    assert actions == ["job.submitted"]


def test_cancel_stops_a_running_job_and_kills_its_run(worker: WorkerProc,
                                                      job_services: Services) -> None:
    svc = job_services
    info = submit(svc, OPERATOR, "digits_cnn", LONG)
    running = wait_until(lambda: running_with_run(svc, info.id), what="job running")
    cancel_job(svc, OPERATOR, info.id)
    wait_until(lambda: get_job(svc, OPERATOR, info.id).status == "cancelled", timeout=60,
               what="job cancelled")
    run = client_for(svc.settings).get_run(running.run_id)
    wait_until(lambda: client_for(svc.settings).get_run(running.run_id).info.status
               == "KILLED", timeout=30, what="run KILLED")
    assert "cancelled" in client_for(svc.settings).get_run(run.info.run_id).data.tags[
        "wb.end_reason"]


def test_timeout_fails_the_job_and_its_run_with_the_reason(worker: WorkerProc,
                                                           job_services: Services) -> None:
    svc = job_services
    info = submit(svc, OPERATOR, "digits_cnn", LONG, timeout=8, retries=0)
    done = wait_for(svc, info.id, seconds=180)
    assert done.status == "failed"
    assert done.run_id
    run = client_for(svc.settings).get_run(done.run_id)
    assert run.info.status == "FAILED"
    assert "timeout" in run.data.tags["wb.end_reason"].lower()


def test_sweep_groups_trials_and_records_the_best(worker: WorkerProc,
                                                  job_services: Services) -> None:
    svc = job_services
    trials = plan("breast_cancer_logreg", {"C": ["0.001", "1.0"]}, 0, {"max_iter": 200})
    sweep = start_sweep(svc, OPERATOR, "breast_cancer_logreg", trials)
    for job_id in sweep.job_ids:
        assert wait_for(svc, job_id, seconds=180).status == "finished"
    done = wait_until(lambda: get_sweep(svc, sweep.id).status != "running" and
                      get_sweep(svc, sweep.id), timeout=60, what="sweep end")
    assert done.status == "finished"
    client = client_for(svc.settings)
    parent = client.get_run(sweep.parent_run_id)
    assert parent.info.status == "FINISHED"
    best = client.get_run(parent.data.tags["wb.best_run_id"])
    assert best.data.tags["mlflow.parentRunId"] == sweep.parent_run_id
    children = [client.get_run(get_job(svc, OPERATOR, j).run_id) for j in sweep.job_ids]
    assert best.data.metrics["test_accuracy"] == max(
        c.data.metrics["test_accuracy"] for c in children)
    assert parent.data.metrics["best_test_accuracy"] == best.data.metrics["test_accuracy"]


def test_api_submit_uses_the_same_service(worker: WorkerProc, job_services: Services) -> None:
    from api import create_app

    svc = job_services
    app = create_app(svc.settings, svc)
    client: FlaskClient = app.test_client()
    make_user(svc, "sci", Role.scientist)
    make_user(svc, "viewer", Role.viewer)
    _, token = make_token(svc, "sci", (Scope.read, Scope.jobs))
    _, vtoken = make_token(svc, "viewer", (Scope.read,))
    auth = {"Authorization": f"Bearer {token}"}
    bad = client.post("/api/jobs", json={"experiment": "wine_rf", "params": {
        "n_estimators": 0}}, headers=auth)
    assert bad.status_code == 422
    assert "n_estimators" in bad.get_json()["message"]
    denied = client.post("/api/jobs", json={"experiment": "wine_rf"},
                         headers={"Authorization": f"Bearer {vtoken}"})
    assert denied.status_code == 403
    resp = client.post("/api/jobs", json={"experiment": "wine_rf", "params": {
        "n_estimators": 10}, "wait": True}, headers=auth)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "finished" and body["result"]["version"]
    listed = client.get("/api/jobs", headers=auth).get_json()["jobs"]
    assert body["id"] in [j["id"] for j in listed]
    again = client.post(f"/api/jobs/{body['id']}/cancel", headers=auth)
    assert again.status_code == 409
    assert client.get(f"/api/jobs/{body['id']}/logs", headers=auth).get_json()["lines"]


def test_cli_run_wait_follows_progress_to_the_end(worker: WorkerProc, job_services: Services,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from mlwb.settings import get_settings
    from tests.jobs.conftest import worker_env
    from wb import context
    from wb.main import cli

    for key, value in worker_env(job_services.settings).items():
        if key.startswith("WB_") or key == "REDIS_URL":
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    context.services.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["run", "breast_cancer_mlp", "-p", "epochs=3", "-p",
                                          "device=cpu", "--wait", "--json"])
        assert result.exit_code == 0, result.output
        row = json.loads(result.output.strip().splitlines()[-1])
        assert row["status"] == "finished" and row["progress"].startswith("finished 3/3")
        # patience=200: early stopping must not end it before the timeout does.
        failed = CliRunner().invoke(cli, ["run", "digits_cnn", "-p", "epochs=500", "-p",
                                          "patience=200", "-p", "batch_size=8", "--timeout",
                                          "6", "--retries", "0", "--wait"])
        assert failed.exit_code == 1 and "failed" in failed.output
    finally:
        get_settings.cache_clear()
        context.services.cache_clear()


def test_sigkill_of_the_horse_fails_the_run_and_retries_into_a_new_run(
        worker: WorkerProc, job_services: Services) -> None:
    """The worker parent ends the dead horse's run FAILED; RQ retries into a new run."""
    svc = job_services
    job = submit(svc, OPERATOR, "digits_cnn", LONG, retries=1)
    first = wait_until(lambda: running_with_run(svc, job.id), what="first attempt running")
    pid = Job.fetch(job.id, connection=svc.redis, serializer=SERIALIZER).get_meta()["pid"]
    os.kill(pid, signal.SIGKILL)
    second = wait_until(lambda: running_with_run(svc, job.id, first.run_id), timeout=120,
                        what="retry running in a new run")
    client = client_for(svc.settings)
    old = client.get_run(first.run_id)
    assert old.info.status == "FAILED"
    assert "signal 9" in old.data.tags["wb.end_reason"]
    assert "retried" in old.data.tags["wb.end_reason"]
    assert second.runs == [first.run_id, second.run_id]
    assert second.attempts == 2
    cancel_job(svc, OPERATOR, job.id)
    wait_until(lambda: client.get_run(second.run_id).info.status == "KILLED", timeout=30,
               what="second run KILLED")
