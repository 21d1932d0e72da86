"""Factories for users and tokens (real rows through the real stores)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests
from click.testing import Result

from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.settings import Settings
from mlwb.users import User, operator

PASSWORD = "correct-horse-battery"
OPERATOR = operator("tests")


def make_user(svc: Services, name: str = "alice", role: Role = Role.scientist,
              password: str = PASSWORD) -> User:
    """An active user with a known password."""
    return svc.users.add(name, password, role, OPERATOR)


def make_token(svc: Services, username: str = "alice",
               scopes: tuple[Scope, ...] = (Scope.read, Scope.events)) -> tuple[str, str]:
    """``(token_id, token)`` for ``username``."""
    return svc.tokens.create(username, "test-token", list(scopes), OPERATOR)


def land(services: Services) -> None:
    """Land every recorded event (what the ingest process does continuously), after the
    API processes in this one have shipped what they spooled (their shippers' job)."""
    from api.serving.shipper import flush_all
    from mlwb.ingest import Ingest

    flush_all()

    ingest = Ingest(services.redis, services.settings.lake_dir).open()
    try:
        while ingest.step():
            pass
    finally:
        ingest.close()


def cli_invoker(settings: Settings, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[Callable[..., Result]]:
    """Put ``settings`` in the environment as `wb` reads it; yield an in-process `wb` runner.

    Use as ``yield from cli_invoker(settings, monkeypatch)`` inside a fixture.
    """
    from click.testing import CliRunner

    from mlwb.settings import get_settings
    from wb import context
    from wb.main import cli

    env = {"WB_DATA_DIR": str(settings.data_dir), "REDIS_URL": settings.effective_redis_url,
           "WB_ENV": "test", "WB_SECRET_KEY": settings.secret_key,
           "WB_MLFLOW_TRACKING_URI": settings.tracking_uri,
           "WB_MLFLOW_REGISTRY_URI": settings.registry_uri}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    context.services.cache_clear()

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    yield invoke
    get_settings.cache_clear()
    context.services.cache_clear()


def child_env(settings: Settings) -> dict[str, str]:
    """The environment a `wb` subprocess needs to run against ``settings``."""
    env = dict(os.environ)
    env.update({"WB_DATA_DIR": str(settings.data_dir), "REDIS_URL": settings.effective_redis_url,
                "WB_ENV": "test", "WB_SECRET_KEY": "test-secret-key-0123456789abcdef",
                "WB_COOKIE_SECURE": "false"})
    return env


def start_ingest(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """A real `wb ingest` process, logging to ``log``."""
    return subprocess.Popen([sys.executable, "-m", "wb", "ingest"], env=child_env(settings),
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait_for(url: str, timeout: float = 60,
             proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers 200 (failing early if ``proc`` exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process serving {url} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def kill_worker_and_ingest(api: subprocess.Popen[bytes], ingest: subprocess.Popen[bytes],
                           settings: Settings, log: Path, pause: float
                           ) -> subprocess.Popen[bytes]:
    """SIGKILL one gunicorn worker of ``api`` and the ingest; after ``pause`` seconds start a
    fresh ingest (returned). The kill tests' midway step."""
    psutil.Process(api.pid).children()[0].send_signal(signal.SIGKILL)
    ingest.send_signal(signal.SIGKILL)
    ingest.wait()
    time.sleep(pause)
    return start_ingest(settings, log)


def stop_all(*procs: subprocess.Popen[bytes]) -> None:
    """Terminate ``procs`` together, then kill any still running after 20 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
