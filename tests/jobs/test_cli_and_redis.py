"""`wb run/jobs/data/experiments/runs` from the shell, and queued jobs surviving a graceful
Redis restart (AOF on)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from click.testing import Result

from experiments.runner import run_experiment
from jobs.queues import queue
from jobs.service import get_job, submit
from mlwb.redis_server import free_port, start_redis
from mlwb.services import Services
from mlwb.settings import Settings
from tests.factories import OPERATOR, cli_invoker

Invoke = Callable[..., Result]


@pytest.fixture
def run(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    yield from cli_invoker(settings, monkeypatch)


@pytest.mark.parametrize(("args", "message"), [
    (["run", "digits_mlp", "-p", "lr=-1"], "lr: Input should be greater than 0"),
    (["run", "digits_mlp", "-p", "lr"], "--param expects NAME=VALUE"),
    (["run", "digits_mlpp"], "no experiment named 'digits_mlpp'"),
    (["run", "wine_rf", "--timeout", "1"], "bad job option timeout"),
    (["sweep", "wine_rf"], "a sweep needs --grid"),
    (["sweep", "wine_rf", "--random", "2", "--range", "n_estimators=x:y"], "--range expects"),
    (["jobs", "show", "nope"], "no job 'nope'"),
    (["data", "add", "missing.csv", "--name", "d", "--target", "y"], "no such file"),
    (["data", "show", "nope"], "no data set named 'nope'"),
    (["experiments", "show", "nope"], "no experiment named"),
    (["runs", "reproduce", "0123456789abcdef"], "no MLflow run"),
])
def test_mistakes_print_an_error_not_a_traceback(run: Invoke, args: list[str],
                                                 message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert errors and message in errors[0] and "Traceback" not in result.output


def test_run_list_cancel_and_data_round_trip(run: Invoke, tmp_path: Path) -> None:
    shown = run("experiments", "show", "wine_gb", "--json")
    assert {json.loads(line)["name"] for line in shown.output.splitlines()} >= {
        "learning_rate", "n_estimators"}
    sub = run("run", "wine_gb", "-p", "n_estimators=5", "--json")
    assert sub.exit_code == 0, sub.output
    job = json.loads(sub.output.splitlines()[-1])
    assert job["status"] == "queued" and job["queue"] == "wb-cpu"
    listed = run("jobs", "list", "--json")
    assert job["id"] in listed.output
    assert "cancelled" in run("jobs", "cancel", job["id"]).output
    assert "already ended" in run("jobs", "cancel", job["id"]).output
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n1,x,0\n2,y,1\n3,x,0\n4,y,1\n")
    added = run("data", "add", str(csv), "--name", "tiny", "--target", "y")
    assert added.exit_code == 0 and "tiny@" in added.output
    assert "categorical" in run("data", "show", "tiny").output
    assert "tiny" in run("data", "list").output
    once = run("jobs", "maintain", "--once")
    assert once.exit_code == 0 and "'abandoned': 0" in once.output


def test_runs_reproduce_here_matches(run: Invoke, settings: Settings) -> None:
    svc = Services.from_settings(settings)
    first = run_experiment(svc, "wine_logreg", {"seed": 4})
    result = run("runs", "reproduce", first.run_id, "--here")
    assert result.exit_code == 0, result.output
    assert "test_accuracy" in result.output and "False" not in result.output


def test_a_graceful_redis_restart_keeps_queued_jobs(tmp_path: Path, settings: Settings) -> None:
    port = free_port()
    proc = start_redis(tmp_path / "redis", port)
    url = f"redis://127.0.0.1:{port}/0"
    svc = Services.from_settings(settings.model_copy(update={"redis_url": url}))
    job = submit(svc, OPERATOR, "wine_rf", {"n_estimators": 3})
    redis.Redis.from_url(url).shutdown()  # graceful: the AOF is flushed
    proc.wait(timeout=30)
    proc = start_redis(tmp_path / "redis", port)
    try:
        svc.redis.connection_pool.disconnect()
        assert job.id in queue(svc.redis).get_job_ids()
        assert get_job(svc, OPERATOR, job.id).status == "queued"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_api_refuses_bad_jobs_before_queueing_anything(app, services) -> None:  # type: ignore[no-untyped-def]
    from mlwb.roles import Role, Scope
    from tests.factories import make_token, make_user

    make_user(services, "sci", Role.scientist)
    _, token = make_token(services, "sci", (Scope.read, Scope.jobs))
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    cases = [
        ("/api/jobs", {"experiment": "wine_rf", "params": {"max_depth": "deep"}}, 422,
         "max_depth"),
        ("/api/jobs", {"experiment": "wine_rf", "colour": "red"}, 400, "colour"),
        ("/api/jobs", {"experiment": "nope"}, 404, "no experiment named 'nope'"),
        ("/api/jobs", {"experiment": "wine_rf", "timeout": "soon"}, 400, "timeout"),
    ]
    for path, body, status, words in cases:
        resp = client.post(path, json=body, headers=auth)
        assert resp.status_code == status, (body, resp.get_json())
        assert words in resp.get_json()["message"], resp.get_json()
    assert queue(services.redis).count == 0 and not services.redis.exists("wb:jobs:index")
    assert client.get("/api/experiments/wine_rf", headers=auth).get_json()["params"]
    assert client.get("/api/jobs/nope", headers=auth).status_code == 404
