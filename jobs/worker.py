"""The RQ worker: JSON serializer, short monitoring intervals, warm imports, CUDA-safe forks.

One worker per GPU (``--gpu N`` sets ``CUDA_VISIBLE_DEVICES`` before torch touches CUDA);
the parent never initialises CUDA, so every forked work horse can.
"""

from __future__ import annotations

import logging
import os

import redis
from rq import Worker

from jobs import context, defaults, lifecycle
from jobs.queues import SERIALIZER, queue
from mlwb.services import Services
from mlwb.settings import Settings

log = logging.getLogger(__name__)


def bind_gpu(gpu: int | None) -> None:
    """Restrict this process (and its horses) to one GPU; call before importing torch."""
    # NVML-based availability checks never create a CUDA context in the parent.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


def warm_up() -> None:
    """Import the heavy libraries once in the parent so each forked horse starts warm.

    Importing torch does not initialise CUDA; nothing here calls into torch.cuda.
    """
    import mlflow.pyfunc
    import mlflow.sklearn  # noqa: F401
    import torch
    import torch.optim

    import experiments.builtin
    import experiments.runner  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # pulls in torch._dynamo
    _warm_model_saving()
    if torch.cuda.is_initialized():  # pragma: no cover - a bug if it ever happens
        raise RuntimeError("CUDA was initialised in the worker parent; horses cannot fork")


def _warm_model_saving() -> None:
    """Save and load a tiny model once, so MLflow's lazy imports and caches (skops types,
    requirement checks, signature inference) are paid here, not in every forked horse."""
    import tempfile

    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from experiments.tracking import _pip, trusted_types

    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = Pipeline([("s", StandardScaler()), ("m", LogisticRegression())]).fit(x, [0, 0, 1, 1])
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.sklearn.save_model(model, f"{tmp}/m", signature=infer_signature(x, [0, 0, 1, 1]),
                                  input_example=x.head(2), pip_requirements=_pip("sklearn"),
                                  skops_trusted_types=trusted_types(model))
        mlflow.pyfunc.load_model(f"{tmp}/m").predict(x)


def build_worker(services: Services, queues: list[str] | None = None,
                 name: str | None = None) -> Worker:
    """A worker on ``queues`` (default: the CPU queue) with the product's settings."""
    context.set_services(services)
    connection = redis.Redis.from_url(services.settings.effective_redis_url)
    return Worker(
        [queue(connection, q) for q in (queues or [defaults.CPU_QUEUE])],
        connection=connection, name=name, serializer=SERIALIZER,
        job_monitoring_interval=defaults.JOB_MONITORING_INTERVAL,
        maintenance_interval=defaults.MAINTENANCE_INTERVAL,
        worker_ttl=defaults.WORKER_TTL,
        work_horse_killed_handler=lifecycle.on_horse_killed,
    )


def run_worker(settings: Settings, gpu: int | None = None, queues: list[str] | None = None,
               burst: bool = False, name: str | None = None) -> bool:
    """Start a worker and process jobs until stopped (or, with ``burst``, until idle)."""
    bind_gpu(gpu)
    if queues is None:
        queues = [defaults.GPU_QUEUE, defaults.CPU_QUEUE] if gpu is not None else [
            defaults.CPU_QUEUE]
    services = Services.from_settings(settings)
    warm_up()
    context.install_fork_hook()
    worker = build_worker(services, queues, name)
    log.info("worker %s on %s (gpu=%s)", worker.name, ",".join(queues), gpu)
    # No scheduler: retries re-enqueue at once, nothing is scheduled for later.
    return bool(worker.work(burst=burst, logging_level="INFO", with_scheduler=False))
