"""Redis-backed limits, shared by every process (gunicorn workers, the workbench)."""

from __future__ import annotations

import time

import redis

from mlwb.errors import RateLimited


class FixedWindow:
    """At most ``limit`` hits per ``window`` seconds per key; counters live in Redis."""

    def __init__(self, client: redis.Redis, name: str, limit: int, window: int) -> None:
        self.redis = client
        self.name = name
        self.limit = limit
        self.window = window

    def key(self, key: str) -> str:
        """The Redis counter of ``key``'s hits in the current window (Lua scripts that count
        a hit atomically with other work use this scheme too)."""
        bucket = int(time.time() // self.window)
        return f"wb:rl:{self.name}:{key}:{bucket}"

    def hit(self, key: str) -> int:
        """Count one hit; returns the count in the current window."""
        pipe = self.redis.pipeline()
        k = self.key(key)
        pipe.incr(k)
        pipe.expire(k, self.window + 1)
        count, _ = pipe.execute()
        return int(count)

    def exceeded(self, key: str) -> bool:
        """True if ``key`` has used up its hits in this window."""
        raw = self.redis.get(self.key(key))
        return raw is not None and int(raw) >= self.limit

    def check(self, key: str, what: str) -> None:
        """Count a hit and raise RateLimited when over the limit."""
        if self.hit(key) > self.limit:
            raise self.refusal(what)

    def refusal(self, what: str) -> RateLimited:
        """The 429 for a caller over the limit (``what``: "prediction requests", ...)."""
        return RateLimited(f"too many {what}; wait up to {self.window} seconds and try again",
                           retry_after=self.window)

    def reset(self, key: str) -> None:
        """Forget ``key``'s hits in this window."""
        self.redis.delete(self.key(key))
