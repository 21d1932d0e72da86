"""Every read the workbench makes: the lake (DuckDB over Parquet), the state DB, Redis/RQ and
MLflow. Pages call these and render; no page holds SQL.

Reads are cached briefly with ``st.cache_data`` (the lake is at most a few seconds behind
anyway); connections are held by ``st.cache_resource``. A :class:`Services` is hashed by its
settings, so two settings (two tests, two stacks) never share cached results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import redis
import streamlit as st
from rq import Worker

from jobs.queues import all_queues
from jobs.service import list_jobs
from mlwb.audit import read_audit, verify
from mlwb.manifest import MANIFEST
from mlwb.services import Services
from mlwb.settings import Settings, get_settings
from mlwb.users import Principal

LAKE_TTL = 5  # seconds: about the ingest's commit cadence, so pages stay that fresh
MLFLOW_TTL = 15  # seconds: runs and models change on the scale of minutes
MAX_RUNS = 500  # runs listed on the Runs page (newest first)


def _fingerprint(svc: Services) -> str:
    return svc.settings.model_dump_json()


HASH: dict[str | type[Any], Callable[[Any], Any]] = {Services: _fingerprint, Principal: repr}


@st.cache_resource(show_spinner=False)
def _services_for(fingerprint: str, _settings: Settings) -> Services:
    return Services.from_settings(_settings)


def services(settings: Settings | None = None) -> Services:
    """The process's Services for ``settings`` (default: from the environment), built once."""
    settings = settings or get_settings()
    return _services_for(settings.model_dump_json(), settings)


@st.cache_resource(show_spinner=False)
def mlflow_client(tracking_uri: str, registry_uri: str) -> mlflow.MlflowClient:
    """One MLflow client per store."""
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


def _mlflow(svc: Services) -> mlflow.MlflowClient | None:
    """The client, or None when the local store was never created (nothing tracked yet)."""
    uri = svc.settings.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None
    return mlflow_client(uri, svc.settings.registry_uri)


# -- overview -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Overview:
    """The headline counts of the Overview page."""

    users: int
    active_users: int
    events: int
    audit_entries: int
    job_events: int
    backlog: int | None  # None when Redis does not answer
    lake_version: int
    lake_updated: datetime | None  # when the ingest last committed; None before the first


def backlog(svc: Services, landed_up_to: str) -> int:
    """Stream entries recorded but not yet landed (the ingest trims what it landed)."""
    return svc.sink.backlog()


@st.cache_data(ttl=LAKE_TTL, show_spinner=False, hash_funcs=HASH)
def overview(svc: Services) -> Overview:
    """Counts of users, landed events, audit entries and the ingest backlog."""
    users = svc.users.list()
    manifest = svc.lake.manifest()
    try:
        pending: int | None = backlog(svc, manifest.last_id)
    except redis.RedisError:
        pending = None
    return Overview(
        users=len(users),
        active_users=sum(u.active for u in users),
        events=sum(s.rows for s in manifest.tables.get("events", [])),
        audit_entries=sum(s.rows for s in manifest.tables.get("audit", [])),
        job_events=sum(s.rows for s in manifest.tables.get("job_events", [])),
        backlog=pending,
        lake_version=manifest.version,
        lake_updated=_committed_at(svc),
    )


def _committed_at(svc: Services) -> datetime | None:
    path = svc.lake.lake_dir / MANIFEST
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        return None


@st.cache_data(ttl=LAKE_TTL, show_spinner=False, hash_funcs=HASH)
def events_per_kind(svc: Services) -> pd.DataFrame:
    """Landed events per kind and source."""
    return svc.lake.df(
        "SELECT kind, coalesce(source, '') AS source, count(*) AS events, max(ts) AS latest "
        "FROM events GROUP BY 1, 2 ORDER BY events DESC"
    )


# -- audit ----------------------------------------------------------------------------------
@st.cache_data(ttl=LAKE_TTL, show_spinner=False, hash_funcs=HASH)
def audit_entries(
    svc: Services, action: str | None = None, actor: str | None = None, limit: int = 200
) -> pd.DataFrame:
    """Newest audit entries first, filtered by action prefix and actor substring."""
    rows = read_audit(svc.lake, limit=limit, action=action or None, actor=actor or None)
    columns = ["seq", "ts", "actor", "action", "target", "before", "after", "ip"]
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class ChainStatus:
    """The result of `wb audit verify`, as the workbench shows it."""

    ok: bool
    entries: int
    problems: tuple[str, ...]


@st.cache_data(ttl=LAKE_TTL, show_spinner=False, hash_funcs=HASH)
def audit_chain(svc: Services) -> ChainStatus:
    """Verify the audit hash chain and its kept heads (the same check as `wb audit verify`)."""
    report = verify(svc.lake, svc.redis)
    return ChainStatus(report.ok, report.entries, tuple(report.problems))


# -- jobs -----------------------------------------------------------------------------------
@st.cache_data(ttl=LAKE_TTL, show_spinner=False, hash_funcs=HASH)
def job_history(svc: Services, limit: int = 200) -> pd.DataFrame:
    """One row per job from the lake's ``job_events``: its latest status and run."""
    return svc.lake.df(
        "SELECT job_id, arg_max(status, ts) AS status, max(run_id) AS run_id, "
        "min(ts) AS first_seen, max(ts) AS last_update, count(*) AS events "
        "FROM job_events GROUP BY job_id ORDER BY last_update DESC LIMIT ?",
        [int(limit)],
    )


JOB_COLUMNS = ["id", "experiment", "status", "queue", "stage", "submitted_by", "created_at",
               "started_at", "ended_at", "run_id", "attempts", "error"]


@st.cache_data(ttl=LAKE_TTL, show_spinner=False, hash_funcs=HASH)
def live_jobs(svc: Services, principal: Principal, limit: int = 100) -> pd.DataFrame:
    """The newest jobs RQ still holds, as the API's job list shows them."""
    rows = []
    for job in list_jobs(svc, principal, limit=limit):
        row = job.to_dict()
        row["stage"] = (job.progress or {}).get("stage")
        rows.append(row)
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


@st.cache_data(ttl=LAKE_TTL, show_spinner=False, hash_funcs=HASH)
def queues(svc: Services) -> pd.DataFrame:
    """The product's RQ queues: waiting, running, failed and finished counts."""
    rows = []
    for q in all_queues(svc.redis):
        rows.append({
            "queue": q.name,
            "waiting": q.count,
            "running": q.started_job_registry.count,
            "failed": q.failed_job_registry.count,
            "finished": q.finished_job_registry.count,
        })
    return pd.DataFrame(rows, columns=["queue", "waiting", "running", "failed", "finished"])


@st.cache_data(ttl=LAKE_TTL, show_spinner=False, hash_funcs=HASH)
def workers(svc: Services) -> pd.DataFrame:
    """Live RQ workers, their state and current job."""
    rows = []
    for w in Worker.all(connection=svc.redis):
        rows.append({
            "worker": w.name,
            "state": str(w.get_state()),
            "queues": ", ".join(w.queue_names()),
            "current_job": w.get_current_job_id(),
            "last_heartbeat": w.last_heartbeat,
        })
    return pd.DataFrame(rows, columns=["worker", "state", "queues", "current_job",
                                       "last_heartbeat"])


# -- MLflow: runs and models ----------------------------------------------------------------
def _ms(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value else None


@st.cache_data(ttl=MLFLOW_TTL, show_spinner=False, hash_funcs=HASH)
def runs(svc: Services, limit: int = MAX_RUNS) -> pd.DataFrame:
    """Runs of every active experiment, newest first: one column per metric and param."""
    client = _mlflow(svc)
    if client is None:
        return pd.DataFrame()
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if not experiments:
        return pd.DataFrame()
    found = client.search_runs(
        list(experiments), max_results=int(limit), order_by=["attributes.start_time DESC"]
    )
    rows: list[dict[str, Any]] = []
    for r in found:
        row: dict[str, Any] = {
            "run_id": r.info.run_id,
            "experiment": experiments.get(r.info.experiment_id, r.info.experiment_id),
            "run_name": r.info.run_name,
            "status": r.info.status,
            "started": _ms(r.info.start_time),
            "ended": _ms(r.info.end_time),
        }
        row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    # Compare at a glance: names and numbers first, ids and times last.
    numbers = sorted(c for c in frame.columns if c.startswith("metrics."))
    knobs = sorted(c for c in frame.columns if c.startswith("params."))
    first = ["run_name", "experiment", "status", *numbers, *knobs, "started", "ended", "run_id"]
    return frame[first]


@st.cache_data(ttl=MLFLOW_TTL, show_spinner=False, hash_funcs=HASH)
def metric_history(svc: Services, run_ids: tuple[str, ...], metric: str) -> pd.DataFrame:
    """Every logged value of ``metric`` for the given runs (step, value, run_id)."""
    client = _mlflow(svc)
    rows = []
    for run_id in run_ids if client is not None else ():
        for m in client.get_metric_history(run_id, metric):  # type: ignore[union-attr]
            rows.append({"run_id": run_id, "step": m.step, "value": m.value,
                         "time": _ms(m.timestamp)})
    return pd.DataFrame(rows, columns=["run_id", "step", "value", "time"])


@st.cache_data(ttl=MLFLOW_TTL, show_spinner=False, hash_funcs=HASH)
def models(svc: Services) -> pd.DataFrame:
    """Registered models with their aliases (alias -> version) and latest version."""
    client = _mlflow(svc)
    if client is None:
        return pd.DataFrame()
    rows = []
    for m in client.search_registered_models(max_results=500):
        versions = [int(v.version) for v in (m.latest_versions or [])]
        rows.append({
            "model": m.name,
            "aliases": ", ".join(f"{a}→v{v}" for a, v in sorted(m.aliases.items())),
            "latest_version": max(versions) if versions else None,
            "description": m.description or "",
            "updated": _ms(m.last_updated_timestamp),
        })
    return pd.DataFrame(rows, columns=["model", "aliases", "latest_version", "description",
                                       "updated"])


@st.cache_data(ttl=MLFLOW_TTL, show_spinner=False, hash_funcs=HASH)
def model_versions(svc: Services, name: str) -> pd.DataFrame:
    """Every version of one registered model, newest first, with its aliases and run."""
    client = _mlflow(svc)
    if client is None:
        return pd.DataFrame()
    found = sorted(client.search_model_versions(f"name = '{name.replace(chr(39), '')}'"),
                   key=lambda v: int(v.version), reverse=True)
    # search_model_versions leaves aliases out; the registered model carries alias -> version.
    holders: dict[str, list[str]] = {}
    if found:
        for alias, version in client.get_registered_model(name).aliases.items():
            holders.setdefault(str(version), []).append(alias)
    rows = []
    for v in found:
        rows.append({
            "version": int(v.version),
            "aliases": ", ".join(sorted(holders.get(str(v.version), []))),
            "status": v.status,
            "run_id": v.run_id,
            "source": v.source,
            "created": _ms(v.creation_timestamp),
        })
    return pd.DataFrame(rows, columns=["version", "aliases", "status", "run_id", "source",
                                       "created"])


@st.cache_data(ttl=LAKE_TTL, show_spinner=False, hash_funcs=HASH)
def serving(svc: Services, name: str) -> dict[str, Any]:
    """What the API serves for ``name`` by the promotion record, and open alias drift."""
    from mlwb.alias_drift import list_drift
    from mlwb.promotions import serving_plan

    plan = serving_plan(svc.engine, name)
    drift = [{"alias": d.alias, "moved in MLflow to": d.mlflow_version,
              "our record": d.recorded_version, "detected": d.detected_at}
             for d in list_drift(svc.engine, name)]
    return {"champion": plan.champion, "challenger": plan.challenger, "mode": plan.mode,
            "weights": plan.weights, "blocked": plan.blocked, "drift": drift}
