"""MLflow plumbing: the store named by settings, experiment lookup, model logging, registration.

The tracking URI is set only inside :func:`tracking` (an entry point's scope), never at import.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow.models
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sqlalchemy.engine import Engine

from experiments.registry import Fitted
from mlwb.registry import artifact_digest, record_hash
from mlwb.settings import Settings

MODEL_PATH = "model"
TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def client_for(settings: Settings) -> MlflowClient:
    """An MLflow client for the store named by ``settings``."""
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


@contextlib.contextmanager
def tracking(settings: Settings) -> Iterator[None]:
    """Point MLflow's fluent API at ``settings``' store for the block, then restore it.

    MLflow keeps the URIs in module globals and mirrors them into environment variables;
    both are put back so nothing leaks into later Settings or other stores.
    """
    from mlflow.tracking._model_registry import utils as reg_utils
    from mlflow.tracking._tracking_service import utils as trk_utils

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    saved = (trk_utils._tracking_uri, reg_utils._registry_uri,
             os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI"))
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    try:
        yield
    finally:
        trk_utils.set_tracking_uri(saved[0])  # type: ignore[arg-type]
        reg_utils._registry_uri = saved[1]
        for key, value in (("MLFLOW_TRACKING_URI", saved[2]), ("MLFLOW_REGISTRY_URI", saved[3])):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def experiment_id(client: MlflowClient, settings: Settings, name: str) -> str:
    """The MLflow experiment ``name``, created with our artifact location if missing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(
            name, artifact_location=f"{settings.artifact_location.rstrip('/')}/{name}"))
    except MlflowException:  # another process created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the code (``+dirty`` if modified), else the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"ml-workbench=={version('ml-workbench')}"


def end_run(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> bool:
    """End ``run_id`` with ``status`` unless it already ended; True if this call ended it."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return False
    if run.info.status in TERMINAL:
        return False
    if reason:
        client.set_tag(run_id, "wb.end_reason", reason[:4000])
    client.set_terminated(run_id, status)
    return True


def _pip(kind: str) -> list[str]:
    import sklearn

    base = [f"pandas=={pd.__version__}", f"numpy=={np.__version__}",
            f"mlflow=={mlflow.__version__}"]
    if kind == "torch":
        import safetensors
        import torch

        return [*base, f"torch=={torch.__version__.split('+')[0]}",
                f"safetensors=={safetensors.__version__}"]
    return [*base, f"scikit-learn=={sklearn.__version__}"]


def trusted_types(model: Any) -> list[str]:
    """The few types skops does not trust by default that our own pipelines hold (numpy and
    scikit-learn internals only; anything else is left untrusted and fails loudly)."""
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    return [t for t in found if t.startswith(("numpy.", "sklearn."))]


def log_model(fitted: Fitted, run_id: str, example: pd.DataFrame, meta: dict[str, Any]) -> str:
    """Log the model with signature and input example (pip requirements given); its URI."""
    from experiments.pyfunc import TorchTabularModel
    from experiments.torch_models import CONFIG, WEIGHTS, save_bundle

    if fitted.kind == "sklearn":
        signature = infer_signature(example, fitted.model.predict(example))
        info = mlflow.sklearn.log_model(
            fitted.model, name=MODEL_PATH, signature=signature, input_example=example.head(3),
            pip_requirements=_pip("sklearn"), run_id=run_id,
            skops_trusted_types=trusted_types(fitted.model))
        return str(info.model_uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_bundle(fitted.model, {"arch": fitted.arch, "kwargs": fitted.kwargs,
                                            **meta}, Path(tmp))
        wrapper = TorchTabularModel()
        artifacts = {"weights": str(folder / WEIGHTS), "config": str(folder / CONFIG)}
        # Predict once through the wrapper so the signature is exactly what serving returns.
        from experiments.pyfunc import pick_device
        from experiments.torch_models import load_bundle

        wrapper.device = pick_device("cpu")
        wrapper.module, _ = load_bundle(folder / WEIGHTS, folder / CONFIG)
        wrapper.feature_names = list(meta["feature_names"])
        wrapper.classes_ = meta.get("classes")
        signature = infer_signature(example, wrapper.predict(None, example))
        # Model.log takes run_id (pyfunc.log_model does not): the run stays ours to end.
        info = mlflow.models.Model.log(
            artifact_path=None, name=MODEL_PATH, flavor=mlflow.pyfunc,
            python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts=artifacts,
            signature=signature, input_example=example.head(3),
            pip_requirements=_pip("torch"), run_id=run_id)
    return str(info.model_uri)


def register(engine: Engine, model_uri: str, name: str, run_id: str) -> str:
    """Register a new version of ``name`` (inside :func:`tracking`) and record its artifact
    hash in our own store: SHA-256 of ``download_artifacts("models:/NAME/VERSION")``."""
    mv = mlflow.register_model(model_uri, name)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{mv.version}", dst_path=tmp)
        record_hash(engine, name, mv.version, artifact_digest(Path(local)), run_id)
    return str(mv.version)
