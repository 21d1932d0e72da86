"""Starting the product: one part each (`wb api`, `wb workbench`, `wb ingest`) or all (`wb up`)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import click

from mlwb import cpu_pin
from wb.context import settings


@click.command("api")
@click.option("--host", default=None, help="Address to bind (default: settings api_host).")
@click.option("--port", default=None, type=int, help="Port (default: settings api_port).")
@click.option("--workers", default=None, type=int, help="gunicorn processes (default 2).")
@click.option("--threads", default=None, type=int, help="Threads per process (default 4).")
def api_cmd(host: str | None, port: int | None, workers: int | None, threads: int | None) -> None:
    """Serve the Flask API under gunicorn (the process is replaced by gunicorn)."""
    from mlwb.gunicorn_worker import WORKER_CLASS

    s = settings().check()
    args = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{host or s.api_host}:{port or s.api_port}",
        "--workers", str(workers or s.api_workers),
        "--threads", str(threads or s.api_threads),
        "--worker-class", WORKER_CLASS,
        "--graceful-timeout", "10",
        "--timeout", "60",
        "api:create_app()",
    ]
    os.environ[cpu_pin.ENV] = s.api_pin_cpus  # the worker reads it (a .env's too)
    os.execv(sys.executable, args)


@click.command("workbench")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=None, type=int, help="Port (default: settings workbench_port).")
def workbench_cmd(host: str, port: int | None) -> None:
    """Serve the Streamlit workbench (the process is replaced by streamlit)."""
    import workbench

    s = settings().check()
    app = Path(workbench.__file__).parent / "app.py"
    args = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.port", str(port or s.workbench_port), "--server.address", host,
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
    ]
    os.execv(sys.executable, args)


@click.command("ingest")
def ingest_cmd() -> None:
    """Run the ingest: the one process that lands recorded events in the lake."""
    import redis as redis_lib

    import mlwb.tables_all  # noqa: F401  (every table the product records)
    from mlwb.events import EventSink
    from mlwb.ingest import Ingest, use_jemalloc
    from mlwb.retention import ingest_hook

    logging.basicConfig(level=logging.INFO, format="%(asctime)s ingest %(levelname)s %(message)s")
    s = settings().check()
    background(s.ingest_nice)
    pool = use_jemalloc()
    client = redis_lib.Redis.from_url(s.effective_redis_url, socket_connect_timeout=5)
    ingest = Ingest(client, s.lake_dir, flush_seconds=s.ingest_flush_seconds).open()
    ingest.hooks.append(ingest_hook(EventSink(client), s.prediction_inputs_days))
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"ingest: landing {ingest.stream} into {s.lake_dir} "
               f"(manifest v{ingest.manifest.version}; Arrow memory: {pool})")
    try:
        ingest.run(stop)
    finally:
        ingest.close()


def background(nice: int) -> None:
    """Lower this process's CPU priority by ``nice``: the ingest is background work (its
    events are safe in Redis), and on a small box every millisecond it takes from a busy
    core is a request's. Linux keeps a nice value per thread, so every thread the process
    has already started (pyarrow's, the allocator's) is lowered too; later ones inherit it.
    Under Linux's autogroup scheduling (on by default on desktops and many servers) each
    session competes as a whole, and a nice value only orders the threads of one session;
    ``wb up`` starts each child in its own session, so the ingest lowers its session's
    group too (only when it leads that session: never the group of a shell or supervisor
    it shares). In a container the cgroup decides instead (``cpu_shares`` in
    docker-compose.yml)."""
    if nice <= 0:
        return
    value = min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice)
    tasks = Path("/proc/self/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.setpriority(os.PRIO_PROCESS, tid, value)
    if os.getsid(0) != os.getpid():
        return
    for _ in range(3):  # the kernel takes one autogroup change per 100 ms from a user
        try:
            Path("/proc/self/autogroup").write_text(f"{value}\n")
            return
        except BlockingIOError:
            time.sleep(0.15)
        except OSError:  # no autogroup (or not Linux): the threads' nice values alone
            return


@click.command("up")
@click.option("--no-demo", is_flag=True, help="Do not seed the demo on first start.")
def up_cmd(no_demo: bool) -> None:
    """Start the whole local stack: Redis, ingest, worker, maintenance, API, workbench."""
    from wb.supervisor import Supervisor

    Supervisor(settings(), seed_demo=not no_demo).run()


def register(cli: click.Group) -> None:
    """Add the commands that start the product."""
    for command in (up_cmd, api_cmd, workbench_cmd, ingest_cmd):
        cli.add_command(command)
