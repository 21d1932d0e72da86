"""Prometheus metrics of the serving path, correct across every gunicorn worker.

Why Redis and not ``PROMETHEUS_MULTIPROC_DIR``: the multiprocess mode must be configured
before ``prometheus_client`` is first imported in every worker, needs a directory wiped at
each deploy and gunicorn hooks for dead workers; forgetting any of that silently reports one
worker's numbers. Here each worker counts in memory and adds its counts to one Redis hash
about once a second (one pipeline, off the request path); ``GET /metrics`` renders the
hash, so any worker answers for all of them. A worker killed with -9 loses at most its last
second of counts.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
import weakref
from collections import defaultdict

import redis
from flask import Blueprint, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from api.auth import requires
from mlwb.alias_drift import open_counts
from mlwb.roles import Role, Scope

log = logging.getLogger(__name__)

KEY = "wb:metrics:serving"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FLUSH_SECONDS = 1.0
LABELS = ("model", "version", "arm", "endpoint", "code")

_BUCKET_FIELDS = [f"b{i}" for i in range(len(BUCKETS) + 1)]
# This process's id, kept current across forks (os.getpid is a system call per request).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))

bp = Blueprint("serving_metrics", __name__)


class ServingMetrics:
    """In-process counters flushed to Redis; one per API process."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._counts: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._pid = 0

    def observe(self, model: str, version: str, arm: str, endpoint: str, code: int,
                seconds: float) -> None:
        """Count one request and its latency."""
        if self._pid != _PID[0]:
            self._ensure_flusher()
        base = f"{model}\t{version or ''}\t{arm or ''}\t{endpoint}\t{code}\t"
        bucket = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            c = self._counts
            c[base + "count"] += 1
            c[base + "sum"] += seconds
            c[base + _BUCKET_FIELDS[bucket]] += 1

    def flush(self) -> None:
        """Add this process's counts since the last flush to the shared hash."""
        with self._lock:
            counts, self._counts = self._counts, defaultdict(float)
        if not counts:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for field, value in counts.items():
                pipe.hincrbyfloat(KEY, field, value)
            pipe.execute()
        except redis.RedisError:
            log.warning("metrics flush failed; keeping the counts for the next try")
            with self._lock:
                for field, value in counts.items():
                    self._counts[field] += value

    def _ensure_flusher(self) -> None:
        # Started lazily and per PID: a thread started before gunicorn forks would not exist
        # in the workers.
        with self._lock:
            if self._pid == _PID[0]:
                return
            self._pid = _PID[0]
            threading.Thread(target=_flush_loop, args=(weakref.ref(self),),
                             name="metrics-flush", daemon=True).start()

    def render(self) -> bytes:
        """The Prometheus text exposition of every worker's counts."""
        self.flush()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_RedisCollector(self.redis))
        return generate_latest(registry)


def _flush_loop(ref: weakref.ref[ServingMetrics]) -> None:
    """Flush about once a second while the metrics object lives (the app holds it)."""
    while True:
        time.sleep(FLUSH_SECONDS)
        metrics = ref()
        if metrics is None:
            return
        metrics.flush()
        del metrics


class _RedisCollector(Collector):
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def collect(self):  # type: ignore[no-untyped-def]
        """Counters and histograms rebuilt from the shared hash."""
        raw = self.redis.hgetall(KEY)
        series: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
        for k, v in raw.items():
            text = k.decode() if isinstance(k, bytes) else str(k)
            *names, stat = text.split("\t")
            series[tuple(names)][stat] = float(v)
        requests = CounterMetricFamily("wb_predict_requests", "Prediction requests served.",
                                       labels=LABELS)
        errors = CounterMetricFamily("wb_predict_errors", "Prediction requests that failed.",
                                     labels=LABELS)
        latency = HistogramMetricFamily("wb_predict_latency_seconds",
                                        "Prediction request latency.",
                                        labels=("model", "version", "arm"))
        hist: dict[tuple[str, ...], list[float]] = defaultdict(
            lambda: [0.0] * (len(BUCKETS) + 2))
        for key, stats in sorted(series.items()):
            if len(key) != len(LABELS):
                continue
            count = stats.get("count", 0.0)
            requests.add_metric(list(key), count)
            if int(key[4]) >= 400:
                errors.add_metric(list(key), count)
            h = hist[key[:3]]
            for i in range(len(BUCKETS) + 1):
                h[i] += stats.get(f"b{i}", 0.0)
            h[-1] += stats.get("sum", 0.0)
        for key3, h in hist.items():
            cumulative, buckets = 0.0, []
            for i, bound in enumerate((*BUCKETS, float("inf"))):
                cumulative += h[i]
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            latency.add_metric(list(key3), buckets, h[-1])
        yield requests
        yield errors
        yield latency


def metrics_of(app_extensions: dict) -> ServingMetrics:  # type: ignore[type-arg]
    """The process's ServingMetrics, created on first use."""
    found = app_extensions.get("wb_serving_metrics")
    if found is None:
        found = app_extensions.setdefault("wb_serving_metrics",
                                          ServingMetrics(app_extensions["wb"].redis))
    return found  # type: ignore[no-any-return]


@bp.get("/metrics")
@requires(Role.viewer, Scope.read, "reading metrics")
def metrics() -> Response:
    """Requests, errors and latency per model, version and arm, summed over all workers."""
    from flask import current_app

    body = metrics_of(current_app.extensions).render()
    body += drift_metrics(current_app.extensions["wb"].engine)
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")


def drift_metrics(engine: Engine) -> bytes:
    """Aliases moved in MLflow behind the promotion record, not served until confirmed."""
    gauge = GaugeMetricFamily("wb_alias_drift_open",
                              "Aliases moved in MLflow directly, awaiting an approver",
                              labels=["model"])
    for model, count in sorted(open_counts(engine).items()):
        gauge.add_metric([model], float(count))

    class _Drift(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            yield gauge

    registry = CollectorRegistry()
    registry.register(_Drift())
    return generate_latest(registry)

