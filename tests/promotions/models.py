"""A real MLflow store with tiny real models, built once per test session and shared.

Each test registers its own uniquely named model (cheap: new versions point at the logged
model), so alias moves in one test never touch another's.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlwb.registry import artifact_digest, record_hash
from mlwb.services import Services
from mlwb.settings import Settings

LINEAR_FEATURES = ["a", "b", "c", "d"]
LINEAR_WEIGHTS = np.array([1.5, -2.0, 0.5, 3.0])
_counter = itertools.count(1)
_STORE: dict[str, Store] = {}


@dataclass(frozen=True)
class Logged:
    """A logged model: its URI, its run and the frame it was trained on."""

    model_uri: str
    artifact_uri: str  # where the model's files are (a file:// URI here)
    run_id: str
    reference: pd.DataFrame


@dataclass(frozen=True)
class Store:
    """The shared MLflow store and the models logged in it."""

    uri: str
    artifact_root: str
    linear: Logged  # LinearRegression on a, b, c, d; reference/reference.parquet logged
    linear_bare: Logged  # the same kind of model, without a reference artifact
    classifier: Logged  # scaled LogisticRegression on breast cancer (30 features)


def _log(model: object, frame: pd.DataFrame, target: pd.Series, experiment_id: str,
         with_reference: bool) -> Logged:
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.sklearn.log_model(
            model, name="model", pip_requirements=["scikit-learn"],
            signature=infer_signature(frame, target), input_example=frame.head(3))
        if with_reference:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "reference.parquet"
                frame.assign(target=target).to_parquet(path)
                mlflow.log_artifact(str(path), "reference")
    return Logged(info.model_uri, info.artifact_path, run.info.run_id, frame)


def shared_store(base: Path) -> Store:
    """The session's store under ``base`` (built on first use of that folder)."""
    if str(base) in _STORE:
        return _STORE[str(base)]
    base.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{base / 'mlflow.db'}"
    artifact_root = (base / "artifacts").as_uri()
    with global_uris(uri):  # tests only: the fluent API logs models most simply
        client = mlflow.MlflowClient(tracking_uri=uri)
        exp = client.create_experiment("tests", artifact_location=artifact_root)
        rng = np.random.default_rng(0)
        lin_x = pd.DataFrame(rng.normal(size=(40, 4)), columns=LINEAR_FEATURES)
        lin_y = pd.Series(lin_x.to_numpy() @ LINEAR_WEIGHTS + 0.25, name="target")
        linear = _log(LinearRegression().fit(lin_x, lin_y), lin_x, lin_y, exp, True)
        bare = _log(LinearRegression().fit(lin_x, lin_y), lin_x, lin_y, exp, False)
        data = load_breast_cancer(as_frame=True)
        cx = data.data.iloc[:200].copy()
        cx.columns = [c.replace(" ", "_") for c in cx.columns]
        cy = data.target.iloc[:200]
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(cx, cy)
        classifier = _log(clf, cx, cy, exp, True)
    _STORE[str(base)] = Store(uri, artifact_root, linear, bare, classifier)
    return _STORE[str(base)]


def with_store(settings: Settings, store: Store) -> Settings:
    """``settings`` pointed at the shared MLflow store."""
    return settings.model_copy(update={"mlflow_tracking_uri": store.uri,
                                       "mlflow_registry_uri": store.uri,
                                       "artifact_root": store.artifact_root})


def register(services: Services, store: Store, versions: int = 3, kind: str = "linear",
             name: str | None = None) -> str:
    """A freshly named registered model with ``versions`` versions (hashes recorded)."""
    logged: Logged = getattr(store, kind)
    name = name or f"{kind}-{next(_counter)}"
    client = mlflow.MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)
    client.create_registered_model(name)
    for _ in range(versions):
        mv = client.create_model_version(name, source=logged.artifact_uri, run_id=logged.run_id)
        # The hash exactly as experiments.tracking.register records it (serving checks it).
        with global_uris(store.uri), tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{mv.version}", dst_path=tmp)
            digest = artifact_digest(Path(local))
        record_hash(services.engine, name, mv.version, digest, logged.run_id)
    return name


@contextlib.contextmanager
def global_uris(uri: str) -> Iterator[None]:
    """MLflow's global tracking and registry URIs set to ``uri`` for a moment (tests only)."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # Restore exactly: set_*_uri also export MLFLOW_*_URI, which Settings would then read.
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri,
             {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")})
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved[0])
        registry_utils._registry_uri = saved[1]
        for key, value in saved[2].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
