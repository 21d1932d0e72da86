"""An alias move under load, through real gunicorn workers: every worker switches within
seconds, without a restart and without one failed request."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from mlwb.gunicorn_worker import WORKER_CLASS
from mlwb.redis_server import free_port
from tests.factories import child_env, wait_for
from tests.serving.conftest import World


@pytest.mark.slow
def test_every_worker_serves_the_new_champion_without_failures(world: World,
                                                               tmp_path: Path) -> None:
    name = world.model("lr", "prior")
    env = {**child_env(world.services.settings), "WB_MLFLOW_TRACKING_URI": world.zoo.uri,
           "WB_MLFLOW_REGISTRY_URI": world.zoo.uri}
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "2",
         "--worker-class", WORKER_CLASS, "--bind", f"127.0.0.1:{port}", "api:create_app()"],
        env=env, stdout=(tmp_path / "api.log").open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/models/{name}/predict"
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        session.headers.update(world.headers)
        while not stop.is_set():
            r = session.post(url, json={"instances": world.rows(1)}, timeout=30)
            seen.append((time.monotonic(), r.status_code, r.headers.get("X-Model-Version", "")))

    try:
        wait_for(f"http://127.0.0.1:{port}/healthz")
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while sum(1 for s in seen if s[1] == 200) < 40 and time.monotonic() < deadline:
            time.sleep(0.1)  # both workers have loaded version 1
        world.promote(name, 2)
        moved = time.monotonic()
        time.sleep(6)
        stop.set()
        for t in threads:
            t.join()
    finally:
        api.terminate()
        api.wait(timeout=20)
    assert {s[1] for s in seen} == {200}, sorted({s[1] for s in seen})
    before = [s for s in seen if s[0] < moved]
    late = [s for s in seen if s[0] > moved + 4]  # plan TTL 2 s + loading the new version
    assert before and {s[2] for s in before} == {"1"}
    assert len(late) > 10 and {s[2] for s in late} == {"2"}, late[:5]
