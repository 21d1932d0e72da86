"""Which version answers a request, and the per-process cache of loaded versions.

Each API process keeps one :class:`ModelRuntime` (in ``app.extensions``). The serving plan of
a model (champion, challenger, traffic mode; ``mlwb.promotions.serving_plan``) is
re-resolved at most every ``PLAN_TTL`` seconds by one request thread while the others keep
using the previous plan; the versions a new plan names are loaded *before* it is swapped in,
so an alias move is served within seconds, without a restart and without a failed request.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from sqlalchemy.engine import Engine

from api.serving.batcher import MAX_BATCH
from api.serving.model import LoadedModel
from mlwb.errors import Conflict, NotFound, StoreError, WorkbenchError
from mlwb.settings import Settings

log = logging.getLogger(__name__)

PLAN_TTL = 2.0  # seconds a process serves a plan before asking again
FAILED_TTL = 10.0  # seconds a version that failed to load is refused without retrying
MAX_TRACKED = 1024  # model names (and name, version pairs) a process keeps state for


@dataclass(frozen=True)
class Plan:
    """The fields of ``mlwb.promotions.ServingPlan`` this module relies on."""

    champion: str | None
    challenger: str | None = None
    mode: str = "single"  # single | split | shadow
    weights: dict[str, float] = field(default_factory=lambda: {"champion": 1.0})
    sticky: bool = False
    blocked: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Arm:
    """The version chosen for one request: alias it answers under, and the traffic arm."""

    version: str
    alias: str | None
    arm: str  # champion | challenger | pinned | shadow


def mlflow_plan(client: mlflow.MlflowClient, name: str) -> Plan:
    """Fallback while ``mlwb.promotions`` is absent: MLflow's ``champion`` alias, no traffic."""
    try:
        model = client.get_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        raise NotFound(f"no registered model named {name!r}; see `wb models list`",
                       model=name) from exc
    aliases = dict(model.aliases or {})
    return Plan(champion=aliases.get("champion"), challenger=aliases.get("challenger"))


def resolve_plan(engine: Engine, client: mlflow.MlflowClient, name: str) -> Any:
    """The serving plan: the project's promotion record when present, else MLflow aliases."""
    try:
        from mlwb.promotions import serving_plan
    except ImportError:
        return mlflow_plan(client, name)
    return serving_plan(engine, name)


def _trim(table: dict[Any, Any]) -> None:
    """Forget the oldest entries past ``MAX_TRACKED``: names and versions come from callers,
    so what a process remembers about them must be bounded. A forgotten plan is read again;
    a forgotten lock at worst lets two threads do the same refresh or load."""
    while len(table) > MAX_TRACKED:
        table.pop(next(iter(table)), None)


def _unit(key: str) -> float:
    """A stable number in [0, 1) for a sticky traffic key."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


class ModelRuntime:
    """Plans and loaded versions of one process; safe to share between threads."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.cache_dir = Path(settings.data_dir) / "serving-cache"
        self._client: mlflow.MlflowClient | None = None
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._load_locks: dict[tuple[str, str], threading.Lock] = {}
        self._failed: dict[tuple[str, str], tuple[float, WorkbenchError]] = {}
        self._plans: dict[str, tuple[float, Any]] = {}
        self._refreshing: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.max_batch = MAX_BATCH  # torch micro-batching; 1 switches it off

    @property
    def client(self) -> mlflow.MlflowClient:
        """The MLflow client of the configured store (built on first use)."""
        if self._client is None:
            self._client = mlflow.MlflowClient(tracking_uri=self.settings.tracking_uri,
                                               registry_uri=self.settings.registry_uri)
        return self._client

    # -- versions -------------------------------------------------------------------
    def model(self, name: str, version: str) -> LoadedModel:
        """The loaded version, loading it once per process (other versions keep serving)."""
        key = (name, str(version))
        found = self._models.get(key)
        if found is not None:
            return found
        with self._lock:
            lock = self._load_locks.setdefault(key, threading.Lock())
            _trim(self._load_locks)
        with lock:
            found = self._models.get(key)
            if found is None:
                failed = self._failed.get(key)
                if failed is not None and time.monotonic() - failed[0] < FAILED_TTL:
                    raise failed[1]  # no download and hash per request for a refused version
                started = time.perf_counter()
                try:
                    found = LoadedModel.load(self.client, self.engine, name, str(version),
                                             self.cache_dir, self.max_batch)
                except WorkbenchError as exc:
                    self._failed[key] = (time.monotonic(), exc)
                    _trim(self._failed)
                    raise
                self._failed.pop(key, None)
                log.info("loaded %s v%s (%s, %s) in %.2fs", name, version, found.kind,
                         found.device, time.perf_counter() - started)
                self._models[key] = found
                # A process that froze its start-up objects (the API's gunicorn worker:
                # mlwb.gunicorn_worker) freezes a model's too: they live as long.
                if gc.get_freeze_count():
                    gc.freeze()
        return found

    def loaded(self) -> list[LoadedModel]:
        """Versions this process holds."""
        return list(self._models.values())

    # -- plans ----------------------------------------------------------------------
    def plan(self, name: str) -> Any:
        """The model's plan, at most ``PLAN_TTL`` seconds old (refreshed by one thread)."""
        now = time.monotonic()
        cached = self._plans.get(name)
        if cached is not None and now - cached[0] < PLAN_TTL:
            return cached[1]
        with self._lock:
            lock = self._refreshing.setdefault(name, threading.Lock())
            _trim(self._refreshing)
        if cached is not None:
            if not lock.acquire(blocking=False):
                return cached[1]  # another thread is refreshing; keep serving the old plan
        else:
            lock.acquire()
        try:
            cached = self._plans.get(name)
            if cached is not None and time.monotonic() - cached[0] < PLAN_TTL:
                return cached[1]
            try:
                plan = resolve_plan(self.engine, self.client, name)
                self._preload(name, plan)
            except WorkbenchError:
                if cached is None:
                    raise
                log.warning("plan refresh for %s failed; serving the previous plan", name,
                            exc_info=True)
                plan = cached[1]
            except Exception as exc:
                if cached is None:
                    raise StoreError(f"could not resolve which version of {name!r} to serve: "
                                     f"{exc}", model=name) from exc
                log.warning("plan refresh for %s failed; serving the previous plan", name,
                            exc_info=True)
                plan = cached[1]
            self._plans.pop(name, None)  # re-inserted: the oldest entry is the least used
            self._plans[name] = (time.monotonic(), plan)
            _trim(self._plans)
            return plan
        finally:
            lock.release()

    def _preload(self, name: str, plan: Any) -> None:
        """Load the plan's versions before it is swapped in (a failed load is logged)."""
        blocked = set(getattr(plan, "blocked", []) or [])
        for version in (plan.champion, plan.challenger):
            if version is None or version in blocked:
                continue
            try:
                self.model(name, version)
            except WorkbenchError:
                if version == plan.champion:
                    raise
                log.warning("challenger %s v%s could not be loaded", name, version,
                            exc_info=True)

    def forget(self, name: str | None = None) -> None:
        """Drop cached plans (tests, and the promotion service in this process)."""
        if name is None:
            self._plans.clear()
        else:
            self._plans.pop(name, None)

    # -- choosing an arm --------------------------------------------------------------
    def choose(
        self, name: str, key: str | None = None, version: str | None = None,
        alias: str | None = None,
    ) -> tuple[Arm, Arm | None]:
        """``(primary, shadow)`` for one request; ``shadow`` scores but is never returned."""
        if version is not None:
            return Arm(str(version), None, "pinned"), None
        plan = self.plan(name)
        blocked = set(getattr(plan, "blocked", []) or [])
        champion, challenger = plan.champion, plan.challenger
        if challenger in blocked:
            challenger = None
        if alias is not None:
            wanted = {"champion": champion, "challenger": challenger}.get(alias)
            if wanted is None:
                raise NotFound(f"model {name!r} has no servable {alias!r} version; aliases "
                               "served: champion, challenger", model=name, alias=alias)
            return Arm(wanted, alias, alias), None
        if champion is None or champion in blocked:
            if champion is None:
                mlflow_plan(self.client, name)  # 404 for a model that does not exist at all
            reason = ("its champion was moved outside ml-workbench and awaits an approver's "
                      "confirmation" if champion in blocked else "it has no champion yet")
            raise Conflict(f"model {name!r} cannot be served: {reason}. Promote a version "
                           f"(`wb models promote {name} VERSION`).", model=name)
        primary = Arm(champion, "champion", "champion")
        if challenger is None or challenger == champion:
            return primary, None
        mode = getattr(plan, "mode", "single")
        if mode == "shadow":
            return primary, Arm(challenger, "challenger", "shadow")
        if mode == "split":
            weights = getattr(plan, "weights", None) or {}
            total = float(weights.get("champion", 0.0)) + float(weights.get("challenger", 0.0))
            share = float(weights.get("challenger", 0.0)) / total if total > 0 else 0.0
            u = _unit(f"{name}\0{key}") if key and getattr(plan, "sticky", False) else (
                random.random())
            if u < share:
                return Arm(challenger, "challenger", "challenger"), None
        return primary, None
