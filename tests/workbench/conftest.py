"""Workbench fixtures: the stack's settings in the environment (pages read it like
`wb workbench` does), a seeded lake, MLflow store and RQ queue, and signed session cookies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import streamlit as st
from rq import Queue

from mlwb.ingest import Ingest
from mlwb.roles import Role
from mlwb.services import Services
from mlwb.sessions import login_id, session_serializer
from mlwb.settings import Settings, get_settings
from mlwb.users import User, operator

APP = Path(__file__).resolve().parents[2] / "workbench" / "app.py"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``get_settings()`` equal ``settings`` in another process."""
    env = {
        "WB_ENV": settings.env.value,
        "WB_DATA_DIR": str(settings.data_dir),
        "REDIS_URL": settings.redis_url,
        "WB_SECRET_KEY": settings.secret_key,
    }
    for field in ("api_url", "workbench_url", "api_port", "workbench_port"):
        value = getattr(settings, field)
        if value != Settings.model_fields[field].default:
            env[f"WB_{field.upper()}"] = str(value)
    if settings.cookie_secure is not None:
        env["WB_COOKIE_SECURE"] = str(settings.cookie_secure).lower()
    return env


@pytest.fixture
def wb_settings(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings in the environment (and no stray .env: cwd is tmp_path); caches cleared."""
    monkeypatch.chdir(tmp_path)
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    assert get_settings().model_dump_json() == settings.model_dump_json()
    yield settings
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def svc(wb_settings: Settings) -> Iterator[Services]:
    """Services over the test's Redis and state DB."""
    services = Services.from_settings(wb_settings)
    yield services
    services.redis.close()
    services.engine.dispose()


def cookie_for(settings: Settings, user: User) -> str:
    """A session cookie exactly as the API's Flask session would sign it after login."""
    data = {"_user_id": login_id(user.id, user.session_epoch), "_fresh": True}
    return session_serializer(settings.resolved_secret_key()).dumps(data)


def land(services: Services) -> None:
    """Run the ingest until the stream is drained (the single writer, in-process)."""
    ingest = Ingest(services.redis, services.settings.lake_dir).open()
    try:
        while ingest.step():
            pass
    finally:
        ingest.close()


@dataclass
class Seeded:
    """What :func:`seeded` created."""

    admin: User
    viewer: User
    run_ids: list[str]


@pytest.fixture
def seeded(svc: Services) -> Seeded:
    """Users, events, job events, a queued RQ job, MLflow runs and a registered model."""
    root = operator("test")
    admin = svc.users.add("ada", "correct horse battery", Role.admin, root)
    viewer = svc.users.add("vic", "correct horse battery", Role.viewer, root)
    svc.sink.record_many("events", [
        {"kind": "prediction", "source": "api", "actor": "user:1:ada", "payload": {"y": i}}
        for i in range(7)
    ])
    svc.sink.record_many("job_events", [
        {"job_id": "job-1", "status": "queued", "payload": {}},
        {"job_id": "job-1", "status": "started", "payload": {}},
        {"job_id": "job-1", "status": "finished", "run_id": "r-1", "payload": {}},
    ])
    land(svc)
    Queue("train", connection=svc.redis).enqueue("builtins.print", "queued by the test")

    s = svc.settings
    client = mlflow.MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.registry_uri)
    exp = client.create_experiment("iris", artifact_location=s.artifact_location + "/iris")
    run_ids = []
    for name, lr in (("lr-0.1", 0.1), ("lr-0.01", 0.01)):
        run = client.create_run(exp, run_name=name)
        client.log_param(run.info.run_id, "lr", lr)
        for step in range(3):
            client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1 + lr), step=step)
        client.set_terminated(run.info.run_id)
        run_ids.append(run.info.run_id)
    client.create_registered_model("iris-clf", description="iris classifier")
    for run_id in run_ids:
        client.create_model_version("iris-clf", f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias("iris-clf", "champion", "1")
    client.set_registered_model_alias("iris-clf", "challenger", "2")
    return Seeded(admin=admin, viewer=viewer, run_ids=run_ids)
