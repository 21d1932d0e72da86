"""The shared service container: every entry point builds one from settings.

The API keeps it in ``app.extensions["wb"]``, the workbench in ``st.cache_resource``, the
CLI and workers build one per process. Connections are created here, never at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy.engine import Engine

from mlwb.db import engine_for
from mlwb.events import EventSink
from mlwb.lake import Lake
from mlwb.settings import Settings
from mlwb.tokens import TokenStore
from mlwb.users import UserStore


@dataclass
class Services:
    """Settings plus the connections and stores built from them."""

    settings: Settings
    redis: redis.Redis
    engine: Engine
    sink: EventSink
    lake: Lake
    users: UserStore
    tokens: TokenStore
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Connect to Redis and the state DB named by ``settings``."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        client = redis.Redis.from_url(
            settings.effective_redis_url, socket_connect_timeout=5, health_check_interval=30
        )
        engine = engine_for(settings.state_url)
        sink = EventSink(client)
        users = UserStore(engine, sink)
        return cls(
            settings=settings,
            redis=client,
            engine=engine,
            sink=sink,
            lake=Lake(settings.lake_dir),
            users=users,
            tokens=TokenStore(engine, sink, users),
        )
