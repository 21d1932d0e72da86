"""The foundation's kill test, through /predict and /feedback: nothing lost, nothing doubled.

Real processes: gunicorn (2 workers) serving a registered model, the `wb ingest` process, 8
concurrent HTTP clients that predict and then send feedback for what they got; one API
worker and the ingest are SIGKILLed midway (the ingest is restarted).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from mlwb.gunicorn_worker import WORKER_CLASS
from mlwb.lake import Lake
from mlwb.redis_server import free_port
from tests.factories import (
    child_env,
    kill_worker_and_ingest,
    start_ingest,
    stop_all,
    wait_for,
)
from tests.serving.conftest import World

TOTAL = 800
CLIENTS = 8


@pytest.mark.slow
def test_kill_worker_and_ingest_while_predicting(world: World, tmp_path: Path) -> None:
    name = world.model("lr")
    settings = world.services.settings
    env = {**child_env(settings), "WB_MLFLOW_TRACKING_URI": world.zoo.uri,
           "WB_MLFLOW_REGISTRY_URI": world.zoo.uri}
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    api = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "2",
         "--worker-class", WORKER_CLASS, "--bind", f"127.0.0.1:{port}", "api:create_app()"],
        env=env, stdout=(logs / "api.log").open("ab"), stderr=subprocess.STDOUT)
    ingest = start_ingest(settings, logs / "ingest.log")
    base = f"http://127.0.0.1:{port}"
    predicted: list[str] = []
    labelled: list[str] = []
    failures: Counter[str] = Counter()
    lock = threading.Lock()
    sent = Counter[str]()
    rows = world.rows(10)

    def post(session: requests.Session, path: str, body: object) -> requests.Response | None:
        for _attempt in range(2):  # a real client retries once
            try:
                return session.post(f"{base}{path}", json=body, timeout=10)
            except requests.RequestException:
                session.close()
        return None

    def client(n: int) -> None:
        session = requests.Session()
        session.headers.update(world.headers)
        for i in range(n):
            r = post(session, f"/api/models/{name}/predict", {"instances": [rows[i % 10]]})
            with lock:
                sent["total"] += 1
            if r is None or r.status_code != 200:
                with lock:
                    failures[f"predict {getattr(r, 'status_code', 'error')}"] += 1
                continue
            pid = r.json()["predictions"][0]["prediction_id"]
            f = post(session, "/api/feedback", {"prediction_id": pid, "label": 1})
            with lock:
                predicted.append(pid)
                # 409 after a retry means the first attempt went through: it is recorded.
                if f is not None and f.status_code in (201, 409):
                    labelled.append(pid)
                else:
                    failures[f"feedback {getattr(f, 'status_code', 'error')}"] += 1

    try:
        wait_for(f"{base}/healthz")
        threads = [threading.Thread(target=client, args=(TOTAL // CLIENTS,))
                   for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        while sent["total"] < TOTAL // 3:
            time.sleep(0.05)
        ingest = kill_worker_and_ingest(api, ingest, settings, logs / "ingest.log", 0.5)
        for t in threads:
            t.join()
        lake = Lake(settings.lake_dir)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            got_p = [r[0] for r in lake.query(
                "SELECT prediction_id FROM predictions WHERE arm <> 'shadow'")]
            got_f = [r[0] for r in lake.query("SELECT prediction_id FROM feedback")]
            if set(predicted) <= set(got_p) and set(labelled) <= set(got_f):
                break
            time.sleep(0.5)
        assert len(predicted) >= TOTAL * 0.9, (len(predicted), failures)
        assert not set(predicted) - set(got_p), "acknowledged predictions were lost"
        assert not set(labelled) - set(got_f), "acknowledged feedback was lost"
        assert [k for k, c in Counter(got_p).items() if c > 1] == [], "predictions doubled"
        assert [k for k, c in Counter(got_f).items() if c > 1] == [], "feedback doubled"
        assert "Traceback" not in (logs / "ingest.log").read_text()
    finally:
        stop_all(api, ingest)
