"""The store under fire: 4 gunicorn workers + the ingest, SIGKILL both midway, lose nothing.

Real processes only: a gunicorn API with 4 workers, the `wb ingest` process, 16 concurrent
HTTP clients, and a reader querying the lake throughout.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from mlwb.gunicorn_worker import WORKER_CLASS
from mlwb.lake import Lake
from mlwb.redis_server import free_port
from mlwb.roles import Scope
from mlwb.services import Services
from mlwb.settings import Settings
from tests.factories import (
    child_env,
    kill_worker_and_ingest,
    make_token,
    make_user,
    start_ingest,
    stop_all,
    wait_for,
)

TOTAL = 10_000
CLIENTS = 16


@pytest.mark.slow
def test_kill_api_worker_and_ingest_midway(settings: Settings, services: Services,
                                          tmp_path: Path) -> None:
    make_user(services)
    _, token = make_token(services, scopes=(Scope.events,))
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    api = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "4", "--threads", "4",
         "--worker-class", WORKER_CLASS, "--bind", f"127.0.0.1:{port}", "api:create_app()"],
        env=child_env(settings), stdout=(logs / "api.log").open("ab"), stderr=subprocess.STDOUT)
    ingest = start_ingest(settings, logs / "ingest.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/healthz")
        acked: list[str] = []
        unacked: list[str] = []
        lock = threading.Lock()
        sent = Counter[str]()
        reader_errors: list[str] = []
        reads = 0
        done = threading.Event()

        def client(n: int) -> None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {token}"
            for i in range(n):
                event_id = uuid.uuid4().hex
                body = {"events": [{"id": event_id, "kind": "kill-test", "payload": {"i": i}}]}
                ok = False
                for _attempt in range(2):  # a real client retries once, with the same id
                    try:
                        r = session.post(f"{base}/api/events", json=body, timeout=10)
                        ok = r.status_code == 202
                        if ok:
                            break
                    except requests.RequestException:
                        session = requests.Session()
                        session.headers["Authorization"] = f"Bearer {token}"
                with lock:
                    (acked if ok else unacked).append(event_id)
                    sent["total"] += 1

        def reader() -> None:
            nonlocal reads
            lake = Lake(settings.lake_dir)
            while not done.is_set():
                try:
                    lake.query("SELECT count(*), count(DISTINCT id) FROM events")
                    reads += 1
                except Exception as exc:
                    reader_errors.append(repr(exc))
                time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(TOTAL // CLIENTS,))
                   for _ in range(CLIENTS)]
        read_thread = threading.Thread(target=reader)
        read_thread.start()
        for t in threads:
            t.start()
        # Midway: SIGKILL one API worker and the ingest, then restart the ingest.
        while sent["total"] < TOTAL // 3:
            time.sleep(0.05)
        ingest = kill_worker_and_ingest(api, ingest, settings, logs / "ingest.log", 1.0)
        for t in threads:
            t.join()

        lake = Lake(settings.lake_dir)
        deadline = time.monotonic() + 120
        want = set(acked)
        while True:
            got = [r[0] for r in lake.query("SELECT id FROM events WHERE kind = 'kill-test'")]
            if want <= set(got) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        done.set()
        read_thread.join()

        counts = Counter(got)
        assert len(acked) >= TOTAL * 0.9, f"only {len(acked)} of {TOTAL} were acknowledged"
        missing = want - set(got)
        assert not missing, f"{len(missing)} acknowledged events were lost"
        doubled = [i for i, c in counts.items() if c > 1]
        assert not doubled, f"{len(doubled)} events landed twice"
        assert set(got) <= want | set(unacked), "rows nobody sent"
        assert not reader_errors, reader_errors[:3]
        assert reads > 10
        ingest_log = (logs / "ingest.log").read_text()
        assert "Traceback" not in ingest_log and "Conflicting lock" not in ingest_log
        print(f"acknowledged {len(acked)}, unacknowledged {len(unacked)}, reads {reads}")
    finally:
        stop_all(api, ingest)
