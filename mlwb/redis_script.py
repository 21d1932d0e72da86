"""A Lua script called on the hot path with one round trip and little else.

redis-py's ``Script.__call__`` goes through argument deprecation checks, the connection
pool's lock and PID check, a retry wrapper and response callbacks on every call: about as
much CPU as the rest of a prediction request. :class:`FastScript` keeps one connection per
thread (built from the client's pool settings, so it has the same address, credentials and
hiredis parser), sends ``EVALSHA`` and reads the reply. The script is loaded again if the server
lost it (``NOSCRIPT``), and a broken connection is reopened and the call retried once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import redis
from redis.connection import AbstractConnection
from redis.exceptions import NoScriptError

_generation = 0  # bumped in a forked child: connections made before the fork are the parent's


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


class FastScript:
    """``client.register_script(source)``, called on a per-thread connection."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._local = threading.local()

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        """Run the script; raises ``redis.RedisError`` like redis-py does."""
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return self._run(command)
        except redis.ConnectionError:
            self._drop()  # the server restarted or the socket broke: once more, fresh
            return self._run(command)

    def _run(self, command: tuple[Any, ...]) -> Any:
        conn = self._conn()
        try:
            conn.send_command(*command)
            return conn.read_response()
        except NoScriptError:
            self.client.script_load(self.source)  # flushed or a fresh server
            conn.send_command(*command)
            return conn.read_response()
        except redis.ResponseError:
            raise  # the script's own error: a whole reply was read, the connection is fine
        except BaseException:
            self._drop()  # a half-read reply must not be read by the next call
            raise

    def _conn(self) -> AbstractConnection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.generation != _generation:  # a forked child makes its own
            # Built like the pool builds its own (same address, credentials, parser) but not
            # counted against the pool's max_connections: these are not the pool's to lend.
            pool = self.client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            local.conn, local.generation = conn, _generation
        return conn  # type: ignore[no-any-return]

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and self._local.generation == _generation:
            conn.disconnect()  # never a socket the parent process still uses
