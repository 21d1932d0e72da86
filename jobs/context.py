"""The services of a worker or maintainer process, built once by its factory.

Job functions and RQ callbacks run inside the worker (or its forked work horse) and get
only ids; they reach the process's services here.
"""

from __future__ import annotations

import os

from mlwb.services import Services
from mlwb.settings import get_settings

_services: Services | None = None


def set_services(services: Services) -> None:
    """Called by the worker / maintainer factory."""
    global _services
    _services = services


def services() -> Services:
    """This process's services (built from the environment if no factory set them)."""
    global _services
    if _services is None:
        _services = Services.from_settings(get_settings())
    return _services


def dispose_engines_after_fork() -> None:
    """In a forked child, drop inherited DB connections (SQLite must not share them)."""
    engines = []
    try:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegStore
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackStore

        engines += list(TrackStore._engine_map.values()) + list(RegStore._engine_map.values())
    except ImportError:  # pragma: no cover - mlflow always present in workers
        pass
    if _services is not None:
        engines.append(_services.engine)
    for engine in engines:
        engine.dispose(close=False)


def install_fork_hook() -> None:
    """Dispose inherited engines in every work horse the worker forks."""
    os.register_at_fork(after_in_child=dispose_engines_after_fork)
