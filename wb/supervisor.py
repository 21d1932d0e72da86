"""`wb up`: start every long-lived process of the local stack, watch them, stop them on Ctrl-C.

Order: lock (one `wb up` per data folder) -> Redis (reuse REDIS_URL if it answers, else a
private AOF redis-server under the data folder) -> MLflow store -> ingest, worker,
maintenance, API, workbench (each in its own process group, logs under data/logs) -> demo
on first start -> URLs. A child that dies is restarted with backoff.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import IO

import click
import redis

from mlwb.db import engine_for
from mlwb.errors import ConfigError
from mlwb.redis_server import answers, start_redis
from mlwb.settings import Settings


@dataclass
class Child:
    """One supervised process."""

    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    log: IO[bytes] | None = field(default=None, repr=False)


class Supervisor:
    """Runs the local stack in the foreground until interrupted."""

    def __init__(self, settings: Settings, seed_demo: bool = True) -> None:
        self.settings = settings.check()
        self.seed_demo = seed_demo
        self.data = settings.data_dir
        self.children: list[Child] = []
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.demo_proc: subprocess.Popen[bytes] | None = None
        self._lock_fh: IO[str] | None = None
        self._stopping = False

    # -- steps --------------------------------------------------------------------------
    def lock(self) -> None:
        """Refuse a second `wb up` on the same data folder."""
        self.data.mkdir(parents=True, exist_ok=True)
        path = self.data / "wb-up.lock"
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            raise ConfigError(
                f"`wb up` is already running for {self.data} (pid {pid}). Use that stack, or "
                "stop it with Ctrl-C in its terminal (or `kill " + pid + "`) first."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh

    def redis_url(self) -> str:
        """REDIS_URL if it answers; else start (or reuse) the private AOF redis-server."""
        if self.settings.redis_url and answers(self.settings.redis_url):
            click.echo(f"redis:     reusing {self.settings.redis_url}")
            return self.settings.redis_url
        port = self.settings.private_redis_port
        url = f"redis://127.0.0.1:{port}/0"
        if answers(url):
            # Only our own (left by an earlier `wb up` on this data folder): two stacks on one
            # stream would trim each other's events.
            theirs = redis.Redis.from_url(url).config_get("dir").get("dir", "")
            ours = str((self.data / "redis").resolve())
            if theirs != ours:
                raise ConfigError(
                    f"port {port} already has a Redis serving {theirs or 'another folder'}, not "
                    f"this stack's {ours}. Set WB_PRIVATE_REDIS_PORT to a free port, or "
                    "REDIS_URL to a Redis to share."
                )
            click.echo(f"redis:     reusing this stack's private redis on port {port}")
            return url
        self.redis_proc = start_redis(self.data / "redis", port)
        click.echo(f"redis:     started a private redis-server on port {port} "
                   f"(AOF under {self.data / 'redis'})")
        return url

    def env(self, redis_url: str) -> dict[str, str]:
        """The environment every child gets: the same settings, made explicit."""
        env = dict(os.environ)
        env.update({
            "REDIS_URL": redis_url,
            "WB_DATA_DIR": str(self.data),
            "WB_ENV": self.settings.env.value,
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def init_mlflow(self) -> None:
        """Create the MLflow store once, before several processes race to migrate it."""
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=self.settings.tracking_uri,
                                     registry_uri=self.settings.registry_uri)
        client.search_experiments(max_results=1)

    def plan(self) -> None:
        """The children, in start order."""
        wb = [sys.executable, "-m", "wb"]
        self.children = [
            Child("ingest", [*wb, "ingest"]),
            Child("worker", [*wb, "worker"]),
            Child("maintain", [*wb, "jobs", "maintain"]),
            Child("api", [*wb, "api"]),
            Child("workbench", [*wb, "workbench"]),
        ]

    def start(self, child: Child, env: dict[str, str]) -> None:
        """Start one child in its own process group, logging to data/logs/NAME.log."""
        logs = self.data / "logs"
        logs.mkdir(exist_ok=True)
        if child.log is None:
            child.log = open(logs / f"{child.name}.log", "ab")
        child.proc = subprocess.Popen(child.args, env=env, stdout=child.log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    def wait_http(self, url: str, timeout: float) -> bool:
        """True once ``url`` answers 200 within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.3)
        return False

    def demo_accounts(self, env: dict[str, str]) -> None:
        """Create the demo accounts now (seconds), so the banner can say how to sign in."""
        result = subprocess.run([sys.executable, "-m", "wb", "demo", "--if-new", "--accounts-only"],
                                env=env, check=False)
        if result.returncode != 0:
            click.secho("demo: could not create the accounts; see above. Create one with "
                        "`wb users add NAME --role admin`.", fg="yellow")

    def demo_rest(self, env: dict[str, str]) -> None:
        """Seed runs, models and traffic in the background (a minute or two on 2 cores)."""
        logs = self.data / "logs"
        logs.mkdir(exist_ok=True)
        click.echo(f"demo:      seeding runs, models and traffic in the background "
                   f"(progress in {logs / 'demo.log'})")
        self.demo_proc = subprocess.Popen(
            [sys.executable, "-m", "wb", "demo", "--if-new"], env=env,
            stdout=open(logs / "demo.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True)

    def banner(self) -> None:
        """Where to go and how to sign in."""
        s = self.settings
        click.echo("")
        click.secho("ml-workbench is up.", fg="green", bold=True)
        click.echo(f"  workbench: {s.public_workbench_url}")
        click.echo(f"  API:       {s.public_api_url}   (health: {s.public_api_url}/healthz)")
        click.echo(f"  sign in:   {s.public_api_url}/login?next={s.public_workbench_url}")
        secret = self.data / "admin-password.txt"
        if secret.exists():
            click.echo(f"  user:      admin   password: {secret.read_text().strip()}  "
                       f"(kept in {secret})")
        else:
            click.echo("  user:      create one with `wb users add NAME --role admin`")
        click.echo(f"  logs:      {self.data / 'logs'}")
        click.echo("Press Ctrl-C to stop everything.")

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> None:
        """Start everything, watch it, stop it all on Ctrl-C or SIGTERM."""
        self.lock()
        # Installed explicitly: a shell that starts `wb up` in the background leaves SIGINT
        # ignored, and SIGTERM/SIGHUP (docker, a closed terminal) must stop everything too.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._interrupt)
        try:
            redis_url = self.redis_url()
            env = self.env(redis_url)
            os.environ.update({"REDIS_URL": redis_url})
            self.init_mlflow()
            engine_for(self.settings.state_url)  # create the state DB before children race
            self.plan()
            for child in self.children:
                self.start(child, env)
            s = self.settings
            if not self.wait_http(f"http://127.0.0.1:{s.api_port}/healthz", 120):
                click.secho("api: not healthy after 120 s; see data/logs/api.log", fg="red")
            if self.seed_demo:
                self.demo_accounts(env)
            self.wait_http(f"http://127.0.0.1:{s.workbench_port}/_stcore/health", 60)
            self.banner()
            if self.seed_demo:
                self.demo_rest(env)
            while not self._stopping:
                self.watch(env)
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _interrupt(self, signum: int, _frame: object) -> None:
        """First signal: unwind to ``stop()``; later ones are ignored while stopping."""
        if not self._stopping:
            self._stopping = True
            raise KeyboardInterrupt

    def watch(self, env: dict[str, str]) -> None:
        """Restart children that exited, with backoff."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            if child.next_start == 0.0:
                delay = min(30.0, 2.0 ** min(child.restarts, 5))
                child.next_start = now + delay
                click.secho(f"{child.name}: exited with {child.proc.returncode}; restarting in "
                            f"{delay:.0f}s (log: data/logs/{child.name}.log)", fg="yellow")
            elif now >= child.next_start:
                child.restarts += 1
                child.next_start = 0.0
                self.start(child, env)

    def stop(self) -> None:
        """Stop children in reverse order (SIGTERM, then SIGKILL), then the private Redis."""
        click.echo("\nstopping...")
        if self.demo_proc is not None and self.demo_proc.poll() is None:
            self.demo_proc.terminate()  # an unfinished demo is resumed by the next `wb up`
            try:
                self.demo_proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.demo_proc.kill()
                self.demo_proc.wait()
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in reversed(self.children):
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
            if child.log is not None:
                child.log.close()
        if self.redis_proc is not None:
            self.redis_proc.terminate()  # SIGTERM: redis flushes its AOF and exits
            try:
                self.redis_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.redis_proc.kill()
        if self._lock_fh is not None:
            self._lock_fh.close()
        click.echo("stopped.")
