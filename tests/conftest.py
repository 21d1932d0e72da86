"""Shared fixtures: a private Redis per session (flushed per test), settings under tmp_path."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from mlwb.redis_server import free_port, start_redis
from mlwb.settings import Environment, Settings

if TYPE_CHECKING:
    from flask import Flask

    from mlwb.services import Services


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server this test run started on a free port (never one that others use)."""
    port = free_port()
    proc: subprocess.Popen[bytes] = start_redis(tmp_path_factory.mktemp("redis"), port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session Redis, flushed before the test (it is ours alone)."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test's Redis."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    """Settings with every file under tmp_path and the test's Redis."""
    data = tmp_path / "data"
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.test,
        data_dir=data,
        redis_url=redis_url,
        secret_key="test-secret-key-0123456789abcdef",
        # Pinned, so nothing a previous test left in MLflow's globals can redirect it.
        mlflow_tracking_uri=f"sqlite:///{data / 'mlflow.db'}",
        mlflow_registry_uri=f"sqlite:///{data / 'mlflow.db'}",
    )


AMBIENT = ("REDIS_URL", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def _clear_ambient() -> None:
    for key in list(os.environ):
        if key.startswith("WB_") or key in AMBIENT:
            del os.environ[key]


def _reset_mlflow_globals() -> None:
    """MLflow keeps its URIs in module globals (and mirrors them into os.environ)."""
    import sys

    trk = sys.modules.get("mlflow.tracking._tracking_service.utils")
    reg = sys.modules.get("mlflow.tracking._model_registry.utils")
    if trk is not None:
        trk._tracking_uri = None  # type: ignore[attr-defined]
    if reg is not None:
        reg._registry_uri = None  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_ambient_env() -> Iterator[None]:
    """Keep a developer's WB_* / REDIS_URL / MLflow URIs out of every test, and keep one
    test's MLflow URIs (globals and their os.environ mirror) out of the next."""
    _clear_ambient()
    _reset_mlflow_globals()
    yield
    _clear_ambient()
    _reset_mlflow_globals()


@pytest.fixture
def services(settings: Settings) -> Services:
    """Real services (Redis, state DB, lake) for the test's settings."""
    from mlwb.services import Services

    return Services.from_settings(settings)


@pytest.fixture
def app(settings: Settings, services: Services) -> Flask:
    """The Flask API for the test's settings."""
    from api import create_app

    application = create_app(settings, services)
    application.config["TESTING"] = True
    return application
