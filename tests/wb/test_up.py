"""`wb up`: the whole local stack from one command; one at a time; Ctrl-C stops it all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from mlwb.redis_server import free_port
from tests.factories import wait_for


@pytest.mark.slow
def test_up_starts_everything_refuses_a_second_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    api_port, wb_port, redis_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("WB_") or k == "REDIS_URL"]:
        env.pop(key)
    env.update({"WB_DATA_DIR": str(tmp_path / "data"), "WB_API_PORT": str(api_port),
                "WB_WORKBENCH_PORT": str(wb_port), "WB_PRIVATE_REDIS_PORT": str(redis_port),
                "WB_API_WORKERS": "2"})
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "wb", "up", "--no-demo"], env=env,
                          stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_for(f"http://127.0.0.1:{api_port}/healthz", 180, up)
        wait_for(f"http://127.0.0.1:{wb_port}/_stcore/health", 180, up)
        # The private Redis keeps an AOF under the data folder.
        assert (tmp_path / "data" / "redis").exists()
        names = {" ".join(p.cmdline()) for p in psutil.Process(up.pid).children(recursive=True)}
        for part in ("wb ingest", "wb worker", "wb jobs maintain", "gunicorn", "streamlit",
                     "redis-server"):
            assert any(part in n for n in names), (part, names)
        second = subprocess.run([sys.executable, "-m", "wb", "up"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "already running" in second.stderr
        family = psutil.Process(up.pid).children(recursive=True)
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
        _gone, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if up.poll() is None:  # the test failed midway: take the whole stack down with it
            leftovers = psutil.Process(up.pid).children(recursive=True)
            up.kill()
            for proc in leftovers:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert "ml-workbench is up" in output and f"localhost:{wb_port}" in output
