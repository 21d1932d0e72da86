"""Workbench fixtures: the stack's settings in the environment (pages read it like
`wb workbench` does), a seeded stack (users, lake, a submitted job, MLflow), signed cookies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import redis
from streamlit.testing.v1 import AppTest

from jobs.service import submit
from mlwb.roles import Role
from mlwb.services import Services
from mlwb.sessions import login_id, session_serializer
from mlwb.settings import Environment, Settings, get_settings
from mlwb.users import User, operator
from tests.factories import land
from workbench.auth import COOKIE_STATE_KEY

APP = Path(__file__).resolve().parents[2] / "workbench" / "app.py"
PAGE_TIMEOUT = 60


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
    for field in ("mlflow_tracking_uri", "mlflow_registry_uri"):
        if getattr(settings, field):
            env[f"WB_{field.upper()}"] = getattr(settings, field)
    return env


def use_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put ``settings`` in the environment (cwd away from any .env) as `wb workbench` reads it."""
    monkeypatch.chdir(settings.data_dir.parent)
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    assert get_settings().model_dump_json() == settings.model_dump_json()


@pytest.fixture
def wb_settings(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The test's own (empty) stack in the environment; caches cleared."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    use_settings(settings, monkeypatch)
    yield settings
    get_settings.cache_clear()


@pytest.fixture
def svc(wb_settings: Settings) -> Iterator[Services]:
    """Services over the test's Redis and state DB."""
    services = Services.from_settings(wb_settings)
    yield services
    services.redis.close()
    services.engine.dispose()


def page(path: str | None = None, cookie: str | None = None) -> AppTest:
    """Run the app (optionally on one page) with an optional session cookie."""
    at = AppTest.from_file(str(APP), default_timeout=PAGE_TIMEOUT)
    if cookie is not None:
        at.session_state[COOKIE_STATE_KEY] = cookie
    at.run()
    if path is not None:
        at.switch_page(path).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def text(at: AppTest) -> str:
    """Every markdown, info, error, success and caption text on the page."""
    parts = [e.value for e in (*at.markdown, *at.info, *at.error, *at.success, *at.warning,
                               *at.caption, *at.title, *at.subheader)]
    return "\n".join(str(p) for p in parts)


def cookie_for(settings: Settings, user: User) -> str:
    """A session cookie exactly as the API's Flask session would sign it after login."""
    data = {"_user_id": login_id(user.id, user.session_epoch), "_fresh": True}
    return session_serializer(settings.resolved_secret_key()).dumps(data)


@dataclass
class Seeded:
    """What :func:`seeded_stack` created."""

    settings: Settings
    svc: Services
    admin: User
    viewer: User
    leaver: User
    run_ids: list[str]
    job_id: str


@pytest.fixture(scope="module")
def seeded_stack(
    redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    """One seeded stack per module (creating an MLflow store takes seconds): users, events,
    job events, a submitted job, MLflow runs with metric history and a registered model.

    Tests of this module must not request ``redis_url`` (it flushes the shared Redis)."""
    redis.Redis.from_url(redis_server).flushall()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.test,
        data_dir=tmp_path_factory.mktemp("workbench") / "data",
        redis_url=redis_server,
        secret_key="test-secret-key-0123456789abcdef",
    )
    svc = Services.from_settings(settings)
    root = operator("test")
    admin = svc.users.add("ada", "correct horse battery", Role.admin, root)
    viewer = svc.users.add("vic", "correct horse battery", Role.viewer, root)
    leaver = svc.users.add("lee", "correct horse battery", Role.viewer, root)
    svc.sink.record_many("events", [
        {"kind": "prediction", "source": "api", "actor": "user:1:ada", "payload": {"y": i}}
        for i in range(7)
    ])
    svc.sink.record_many("job_events", [
        {"job_id": "job-1", "status": "queued", "payload": {}},
        {"job_id": "job-1", "status": "started", "payload": {}},
        {"job_id": "job-1", "status": "finished", "run_id": "r-1", "payload": {}},
    ])
    # A real submission (validated, queued, audited, job event recorded); no worker runs it.
    job = submit(svc, operator("test"), "diabetes_ridge", {"alpha": 0.5})
    land(svc)

    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri,
                                 registry_uri=settings.registry_uri)
    exp = client.create_experiment("iris",
                                   artifact_location=settings.artifact_location + "/iris")
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
    yield Seeded(settings, svc, admin, viewer, leaver, run_ids, job.id)
    svc.redis.close()
    svc.engine.dispose()


@pytest.fixture
def seeded(
    seeded_stack: Seeded, _no_ambient_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Seeded]:
    """The module's seeded stack, in the environment for this test."""
    use_settings(seeded_stack.settings, monkeypatch)
    yield seeded_stack
    get_settings.cache_clear()
