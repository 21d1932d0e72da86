"""The API's gunicorn worker spreads keep-alive connections across workers (real gunicorn)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlwb.gunicorn_worker import WORKER_CLASS
from mlwb.redis_server import free_port
from tests.factories import wait_for

APP = '''
import os
import threading
import time
from flask import Flask
app = Flask("pid")
threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()  # as models' pools do

@app.get("/pid")
def pid():
    return str(os.getpid())

@app.get("/frozen")
def frozen():  # objects the worker froze after loading the app
    import gc
    return str(gc.get_freeze_count())

@app.get("/spin")
def spin():  # holds the GIL: the worker's main loop then waits for it after every poll
    end = time.monotonic() + 3
    while time.monotonic() < end:
        pass
    return str(os.getpid())
'''


@contextlib.contextmanager
def _gunicorn(tmp_path: Path, workers: int = 2, cpus: list[int] | None = None,
              **env: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """gunicorn, ``workers`` x 2 threads of the API's worker class, on a pid-echo app
    (on ``cpus`` only, when given: its affinity, as ``taskset`` would set it)."""
    (tmp_path / "pid_app.py").write_text(APP)
    port = free_port()
    env = {**os.environ, "WB_API_PIN_CPUS": "auto", **env,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    command = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", "2",
               "--worker-class", WORKER_CLASS, "--bind", f"127.0.0.1:{port}", "pid_app:app"]
    if cpus:  # as taskset would: set the affinity, then exec gunicorn
        command = [sys.executable, "-c", "import os, sys; os.sched_setaffinity(0, "
                   f"{set(cpus)!r}); os.execv(sys.executable, sys.argv[1:])", *command]
    proc = subprocess.Popen(command, env=env, stdout=(tmp_path / "gunicorn.log").open("ab"),
                            stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/pid", proc=proc)
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """gunicorn, 2 workers x 2 threads of the API's worker class, on a pid-echo app."""
    with _gunicorn(tmp_path) as (port, _):
        yield port, _until_both_answer(port)


def _until_both_answer(port: int) -> set[int]:
    """Fresh connections until two workers have answered (a slow machine boots them apart)."""
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            seen.add(_pid(conn))
        finally:
            conn.close()
    assert len(seen) == 2, f"only {seen} answered within 60 s"
    time.sleep(1)  # the workers count a closed connection until they notice it closed
    return seen


def _pid(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/pid")
    resp = conn.getresponse()
    assert resp.status == 200
    return int(resp.read())


def _open(port: int, n: int) -> list[tuple[http.client.HTTPConnection, int]]:
    """``n`` keep-alive connections opened one after another, each with the pid it reached."""
    conns = []
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conns.append((conn, _pid(conn)))
    return conns


def test_keep_alive_connections_are_split_evenly(server) -> None:  # type: ignore[no-untyped-def]
    port, _ = server
    conns = _open(port, 8)  # a client opening its pool: each connection stays open
    try:
        per_worker = Counter(pid for _, pid in conns)
        assert sorted(per_worker.values()) == [4, 4], per_worker
        for conn, pid in conns:  # and each keeps its worker (keep-alive)
            assert _pid(conn) == pid
    finally:
        for conn, _ in conns:
            conn.close()


def test_a_replacement_worker_takes_its_share(server) -> None:  # type: ignore[no-untyped-def]
    port, pids = server
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)  # the master forks a replacement into the dead slot
    assert victim not in _until_both_answer(port)  # every connection is served meanwhile
    conns = _open(port, 8)
    try:
        per_worker = Counter(pid for _, pid in conns)
        assert victim not in per_worker
        assert sorted(per_worker.values()) == [4, 4], per_worker
    finally:
        for conn, _ in conns:
            conn.close()


def test_a_stopped_sibling_delays_a_client_briefly_not_until_it_goes_stale(server) -> None:  # type: ignore[no-untyped-def]
    """A sibling that looks lighter but never accepts (SIGSTOP: alive, heartbeat still
    fresh for seconds) costs a new client MAX_WAIT at most, even while the busy worker's
    main loop crawls behind a GIL-holding request."""
    port, pids = server
    busy = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    a = _pid(busy)
    (b,) = pids - {a}
    os.kill(b, signal.SIGSTOP)
    spinning = threading.Thread(target=lambda: busy.request("GET", "/spin"))
    try:
        spinning.start()
        time.sleep(0.3)  # the spin holds worker a's GIL now
        late = http.client.HTTPConnection("127.0.0.1", port, timeout=1.5)  # < STALE - 1 s
        try:
            assert _pid(late) == a  # a took it itself: b is stopped
        finally:
            late.close()
    finally:
        os.kill(b, signal.SIGCONT)
        spinning.join()
        busy.getresponse().read()
        busy.close()


def test_connections_arriving_apart_go_to_the_lighter_worker(server) -> None:  # type: ignore[no-untyped-def]
    port, _ = server
    conns = _open(port, 4)  # 2 and 2
    by_pid: dict[int, list[http.client.HTTPConnection]] = {}
    for conn, pid in conns:
        by_pid.setdefault(pid, []).append(conn)
    assert sorted(len(v) for v in by_pid.values()) == [2, 2]
    heavy, light = sorted(by_pid)
    for conn in by_pid.pop(light):
        conn.close()
    time.sleep(1)  # the light worker notices its closed connections: it holds 0, heavy 2
    later = []
    try:
        for _ in range(2):
            later += _open(port, 1)  # each one 0.2 s after the last, each a new wait
            time.sleep(0.2)
        assert [pid for _, pid in later] == [light, light]
    finally:
        for conn in by_pid[heavy] + [c for c, _ in later]:
            conn.close()


def test_the_worker_freezes_what_it_loaded(server) -> None:  # type: ignore[no-untyped-def]
    """The app's objects are out of the collector's sight (no full collection over them)."""
    port, _ = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/frozen")
    assert int(conn.getresponse().read()) > 10_000  # Flask and its imports at least


TWO_CORES = sorted(getattr(os, "sched_getaffinity", lambda _: set())(0))[:2]
needs_two_cores = pytest.mark.skipif(len(TWO_CORES) < 2, reason="pinning needs two cores")


def _cores(pid: int) -> set[tuple[int, ...]]:
    """The cores each thread of process ``pid`` may run on (one tuple per distinct set)."""
    return {tuple(sorted(os.sched_getaffinity(int(task.name))))
            for task in Path(f"/proc/{pid}/task").iterdir()}


@needs_two_cores
def test_with_a_worker_per_core_each_worker_runs_on_a_core_of_its_own(tmp_path: Path) -> None:
    """``auto``: 2 workers on 2 cores. Every thread of a worker (the app's, the request
    threads: all start after the pinning) is on the worker's core; a replacement takes the
    core left free."""
    with _gunicorn(tmp_path, cpus=TWO_CORES) as (port, _):
        pids = _until_both_answer(port)
        cores = {pid: _cores(pid) for pid in pids}
        assert all(len(threads) == 1 for threads in cores.values()), cores  # one set each
        assert sorted(next(iter(t)) for t in cores.values()) == [(c,) for c in TWO_CORES]
        # gunicorn's numbering alone would put the next worker on the second core: the
        # victim on the first one shows that the replacement reads its siblings' cores
        (victim,) = [pid for pid in pids if cores[pid] == {(TWO_CORES[0],)}]
        os.kill(victim, signal.SIGKILL)
        (replacement,) = _until_both_answer(port) - pids
        assert _cores(replacement) == cores[victim]


@needs_two_cores
def test_fewer_workers_than_cores_are_left_to_the_scheduler(tmp_path: Path) -> None:
    with _gunicorn(tmp_path, workers=1, cpus=TWO_CORES) as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        assert _cores(_pid(conn)) == {tuple(TWO_CORES)}
        conn.close()
    with _gunicorn(tmp_path, workers=1, cpus=TWO_CORES, WB_API_PIN_CPUS="on") as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        assert len(next(iter(_cores(_pid(conn))))) == 1  # "on" pins it all the same
        conn.close()


@needs_two_cores
def test_pinning_switched_off(tmp_path: Path) -> None:
    with _gunicorn(tmp_path, cpus=TWO_CORES, WB_API_PIN_CPUS="off") as (port, _):
        for pid in _until_both_answer(port):
            assert _cores(pid) == {tuple(TWO_CORES)}


def test_a_wrong_pinning_setting_stops_gunicorn_saying_why(tmp_path: Path) -> None:
    (tmp_path / "pid_app.py").write_text(APP)
    env = {**os.environ, "WB_API_PIN_CPUS": "yes please",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--worker-class", WORKER_CLASS, "--bind",
         f"127.0.0.1:{free_port()}", "pid_app:app"],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "WB_API_PIN_CPUS='yes please' is not one of auto, on, off" in done.stderr
