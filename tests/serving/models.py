"""Real models for the serving tests, logged once per session into a real MLflow store.

- ``lr``: StandardScaler + LogisticRegression on breast cancer (30 double columns);
- ``prior``: the same signature, a logistic regression with zero weights answering the class
  prior for every row (recognisable: no fitted model outputs exactly that);
- ``bayes``: Gaussian naive Bayes (the generic sklearn path, no compiled kernel);
- ``mlp``: a torch TabularMLP behind ``experiments.pyfunc.TorchTabularModel``.

Each test registers its own uniquely named model (new versions point at the logged models,
hashes recorded the way ``experiments.tracking.register`` records them).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlwb.registry import artifact_digest, record_hash
from mlwb.services import Services

_counter = itertools.count(1)
_ZOO: dict[str, Zoo] = {}


@dataclass(frozen=True)
class Logged:
    """A logged model: its URI and run."""

    model_uri: str
    run_id: str


@dataclass(frozen=True)
class Zoo:
    """The session's MLflow store, its logged models and the data they know."""

    uri: str
    artifact_root: str
    models: dict[str, Logged]
    X: pd.DataFrame
    y: pd.Series

    def register(self, services: Services, *kinds: str, name: str | None = None,
                 record: bool = True) -> str:
        """A fresh registered model whose versions 1..n are ``kinds`` (hashes recorded)."""
        name = name or f"bc-{next(_counter)}"
        client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        # The registry store resolves a models:/m-... source through the *global* URIs.
        with global_uris(self.uri):
            client.create_registered_model(name)
            for kind in kinds:
                logged = self.models[kind]
                mv = client.create_model_version(name, source=logged.model_uri,
                                                 run_id=logged.run_id)
                if record:
                    _record_hash(services, name, mv.version, logged.run_id)
        return name

    def register_python(self, services: Services, name: str, python_model: Any,
                        signature: ModelSignature | None) -> str:
        """``python_model`` logged as a pyfunc with ``signature``, registered as ``name``
        version 1 with its hash recorded (not promoted)."""
        with global_uris(self.uri):
            client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            exp = client.get_experiment_by_name("serving-tests").experiment_id  # type: ignore[union-attr]
            with mlflow.start_run(experiment_id=exp) as run:
                info = mlflow.pyfunc.log_model(name="model", python_model=python_model,
                                               signature=signature,
                                               pip_requirements=["pandas"])
            client.create_registered_model(name)
            mv = client.create_model_version(name, source=info.model_uri,
                                             run_id=run.info.run_id)
            _record_hash(services, name, mv.version, run.info.run_id)
        return name


def _record_hash(services: Services, name: str, version: str, run_id: str) -> None:
    """The artifact hash exactly as experiments.tracking.register records it."""
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=tmp)
        digest = artifact_digest(Path(local))
    record_hash(services.engine, name, version, digest, run_id)


@contextlib.contextmanager
def global_uris(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking and registry URIs (and their env twins) at ``uri``.

    Restored afterwards, including the environment, which ``mlflow.set_*_uri`` writes to.
    """
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    env = {k: os.environ.get(k) for k in keys}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        # Globals stay on ``uri`` unless they were set before (never the cwd's mlflow.db).
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"] or uri)
        mlflow.set_registry_uri(env["MLFLOW_REGISTRY_URI"] or uri)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)


def breast_cancer() -> tuple[pd.DataFrame, pd.Series]:
    """Features with identifier-friendly column names, and the target."""
    data = load_breast_cancer(as_frame=True)
    X = data.data.copy()
    X.columns = [c.replace(" ", "_") for c in X.columns]
    return X, data.target


def _log_sklearn(model: object, X: pd.DataFrame, y: pd.Series, exp: str) -> tuple[str, str]:
    with mlflow.start_run(experiment_id=exp) as run:
        info = mlflow.sklearn.log_model(
            model, name="model", pip_requirements=["scikit-learn"],
            signature=infer_signature(X, y), input_example=X.head(2))
    return info.model_uri, run.info.run_id


def _log_torch(X: pd.DataFrame, exp: str, tmp: Path) -> tuple[str, str]:
    """A torch MLP saved and logged the way ``experiments.tracking.log_model`` does."""
    import torch

    from experiments.pyfunc import TorchTabularModel
    from experiments.torch_models import CONFIG, WEIGHTS, TabularMLP, save_bundle

    torch.manual_seed(0)
    kwargs = {"n_features": X.shape[1], "n_outputs": 2, "hidden": 16, "layers": 1}
    module = TabularMLP(**kwargs)
    module.norm.fit(torch.as_tensor(X.to_numpy(), dtype=torch.float32))
    folder = save_bundle(module, {"arch": "mlp", "kwargs": kwargs,
                                  "feature_names": list(X.columns), "classes": [0, 1]}, tmp)
    with mlflow.start_run(experiment_id=exp) as run:
        info = mlflow.pyfunc.log_model(
            name="model", python_model=TorchTabularModel(),
            artifacts={"weights": str(folder / WEIGHTS), "config": str(folder / CONFIG)},
            signature=infer_signature(X, np.zeros(len(X), dtype=np.int64)),
            input_example=X.head(2), pip_requirements=["torch", "safetensors"])
    return info.model_uri, run.info.run_id


def zoo(base: Path) -> Zoo:
    """The session's zoo under ``base`` (built on first use, ~10 s)."""
    if "zoo" in _ZOO:
        return _ZOO["zoo"]
    base.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{base / 'mlflow.db'}"
    root = (base / "artifacts").as_uri()
    X, y = breast_cancer()
    with global_uris(uri):  # tests only: the fluent API logs models most simply
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp = client.create_experiment("serving-tests", artifact_location=root)
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
        # Recognisable: weights zeroed, intercept at the prior's log-odds, so every row gets
        # the class prior (no fitted model outputs exactly that); still a fast linear model.
        prior = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
        prior[-1].coef_[:] = 0.0
        prior[-1].intercept_[:] = np.log(y.mean() / (1 - y.mean()))
        bayes = make_pipeline(StandardScaler(), GaussianNB()).fit(X, y)
        logged = {
            "lr": _log_sklearn(lr, X, y, exp),
            "bayes": _log_sklearn(bayes, X, y, exp),
            "prior": _log_sklearn(prior, X, y, exp),
            "mlp": _log_torch(X, exp, base / "torch"),
        }
        models = {kind: Logged(model_uri, run_id) for kind, (model_uri, run_id) in logged.items()}
    _ZOO["zoo"] = Zoo(uri, root, models, X, y)
    return _ZOO["zoo"]
