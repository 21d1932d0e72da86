"""Real models for the serving tests, logged once per session into a real MLflow store.

- ``lr``: StandardScaler + LogisticRegression on breast cancer (30 double columns);
- ``prior``: the same signature, a DummyClassifier answering the class prior for every row
  (its probabilities are recognisable: no logistic regression outputs exactly them);
- ``mlp``: a torch TabularMLP logged by ``experiments.tracking.log_model`` (H1's pyfunc).

Each test registers its own uniquely named model (new versions point at the logged models,
hashes recorded the way ``experiments.tracking.register`` records them).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlwb.registry import artifact_digest, record_hash
from mlwb.services import Services

_counter = itertools.count(1)
_ZOO: dict[str, Zoo] = {}


@dataclass(frozen=True)
class Logged:
    """A logged model: URI, run, hash of its artifacts."""

    model_uri: str
    run_id: str
    digest: str


@dataclass(frozen=True)
class Zoo:
    """The session's MLflow store, its logged models and the data they know."""

    uri: str
    artifact_root: str
    models: dict[str, Logged]
    X: pd.DataFrame
    y: pd.Series

    def register(self, services: Services, *kinds: str, name: str | None = None) -> str:
        """A fresh registered model whose versions 1..n are ``kinds`` (hashes recorded)."""
        name = name or f"bc-{next(_counter)}"
        client = mlflow.MlflowClient(tracking_uri=self.uri)
        client.create_registered_model(name)
        for kind in kinds:
            logged = self.models[kind]
            mv = client.create_model_version(name, source=logged.model_uri,
                                             run_id=logged.run_id)
            record_hash(services.engine, name, mv.version, logged.digest, logged.run_id)
        return name


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


def _log_torch(X: pd.DataFrame, exp: str) -> tuple[str, str]:
    import torch

    from experiments.registry import Fitted
    from experiments.torch_models import TabularMLP
    from experiments.tracking import log_model

    torch.manual_seed(0)
    module = TabularMLP(n_features=X.shape[1], n_outputs=2, hidden=16, layers=1)
    module.norm.fit(torch.as_tensor(X.to_numpy(), dtype=torch.float32))
    fitted = Fitted(kind="torch", model=module, arch="mlp",
                    kwargs={"n_features": X.shape[1], "n_outputs": 2, "hidden": 16,
                            "layers": 1})
    with mlflow.start_run(experiment_id=exp) as run:
        uri = log_model(fitted, run.info.run_id, X.head(20),
                        {"feature_names": list(X.columns), "classes": [0, 1]})
    return uri, run.info.run_id


def zoo(base: Path) -> Zoo:
    """The session's zoo under ``base`` (built on first use, ~10 s)."""
    if "zoo" in _ZOO:
        return _ZOO["zoo"]
    base.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{base / 'mlflow.db'}"
    root = (base / "artifacts").as_uri()
    X, y = breast_cancer()
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)  # tests only: the fluent API logs models most simply
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        exp = client.create_experiment("serving-tests", artifact_location=root)
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
        prior = make_pipeline(StandardScaler(), DummyClassifier(strategy="prior")).fit(X, y)
        logged = {
            "lr": _log_sklearn(lr, X, y, exp),
            "prior": _log_sklearn(prior, X, y, exp),
            "mlp": _log_torch(X, exp),
        }
        models = {}
        for kind, (model_uri, run_id) in logged.items():
            local = mlflow.artifacts.download_artifacts(model_uri, tracking_uri=uri,
                                                        dst_path=str(base / "dl" / kind))
            models[kind] = Logged(model_uri, run_id, artifact_digest(Path(local)))
    finally:
        mlflow.set_tracking_uri(previous)
    _ZOO["zoo"] = Zoo(uri, root, models, X, y)
    return _ZOO["zoo"]
