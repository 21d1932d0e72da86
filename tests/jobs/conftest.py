"""Fixtures for job tests: settings shared by the test and real `wb worker` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from mlwb.services import Services
from mlwb.settings import Environment, Settings

SECRET = "test-secret-key-0123456789abcdef"


def make_settings(data_dir: Path, redis_url: str) -> Settings:
    """Settings a test and its worker processes agree on."""
    return Settings(_env_file=None, env=Environment.test, data_dir=data_dir,  # type: ignore[call-arg]
                    redis_url=redis_url, secret_key=SECRET)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment a `wb` subprocess needs to use ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WB_")
           and k not in ("REDIS_URL", "MLFLOW_TRACKING_URI")}
    env.update(WB_DATA_DIR=str(settings.data_dir), REDIS_URL=settings.effective_redis_url,
               WB_ENV="test", WB_SECRET_KEY=SECRET, PYTHONUNBUFFERED="1")
    return env


class WorkerProc:
    """A real `wb worker` subprocess in its own process group."""

    def __init__(self, settings: Settings, log: Path, name: str, *args: str) -> None:
        self.name = name
        self.log = log
        self.fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wb", "worker", "--name", name, *args],
            env=worker_env(settings), stdout=self.fh, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_ready(self, client: redis.Redis, timeout: float = 90) -> None:
        """Wait until the worker registered itself in Redis."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.exists(f"rq:worker:{self.name}"):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready: {self.log.read_text()[-3000:]}")

    def session_pids(self) -> list[int]:
        """The worker and its work horses (a horse has its own process group but stays in
        the worker's session)."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getsid(int(entry)) == self.proc.pid:
                        pids.append(int(entry))
                except OSError:
                    continue
        return pids

    def kill_group(self) -> None:
        """SIGKILL the worker's whole process group (its horse lives on, as on a real box)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop the worker and any horse still training (a failed test may leave one)."""
        if self.proc.poll() is None:
            # Two SIGTERMs: RQ's cold shutdown, which kills a running horse.
            self.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill_group()
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.fh.close()


def wait_until(check: Callable[[], Any], timeout: float = 120, every: float = 0.2,
               what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (generous deadline, no timing asserts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def job_settings(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Settings:
    """One data dir (state DB, lake, MLflow store) per test module, shared with its workers."""
    return make_settings(tmp_path_factory.mktemp("jobs"), redis_server)


@pytest.fixture(scope="module")
def job_services(job_settings: Settings) -> Services:
    """Services on the module's settings (the Redis is the session's, not flushed here)."""
    return Services.from_settings(job_settings)


@pytest.fixture(scope="module")
def worker(job_settings: Settings, job_services: Services,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProc]:
    """A warm worker for the whole module."""
    job_services.redis.flushall()
    w = WorkerProc(job_settings, tmp_path_factory.mktemp("wlog") / "worker.log",
                   f"w-{os.getpid()}-{time.monotonic_ns()}")
    w.wait_ready(job_services.redis)
    yield w
    w.stop()
