"""The built-in experiments, on data that ships with scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from experiments.config import (
    BoostingConfig,
    CNNConfig,
    ForestConfig,
    LogRegConfig,
    MLPConfig,
    RidgeConfig,
    TorchConfig,
)
from experiments.data import Split
from experiments.pyfunc import pick_device
from experiments.registry import Experiment, FitContext, Fitted, register
from experiments.torch_models import build_seeded
from experiments.torch_train import describe_device, fit
from mlwb.errors import Unprocessable


def preprocessing(frame: pd.DataFrame) -> ColumnTransformer:
    """Impute and scale numeric columns, impute and one-hot encode the others.

    Columns are listed by name (not by a dtype selector) so the saved pipeline holds only
    plain data and loads with skops' default trusted types.
    """
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    other = [c for c in frame.columns if c not in numeric]
    parts: list[tuple[str, Any, list[str]]] = [
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric)]
    if other:
        parts.append(("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                           OneHotEncoder(handle_unknown="ignore")), other))
    return ColumnTransformer(parts)


def sklearn_fit(estimator: BaseEstimator, split: Split) -> Fitted:
    """Fit a Pipeline(preprocessing, estimator): the transforms travel with the model."""
    pipe = Pipeline([("prep", preprocessing(split.X_train)), ("model", estimator)])
    pipe.fit(split.X_train, split.y_train)
    return Fitted(kind="sklearn", model=pipe, tags={"device": "cpu"})


def numeric_features(split: Split) -> None:
    """Torch experiments take numeric features only; say which column is not."""
    bad = [c for c in split.X_train.columns if not pd.api.types.is_numeric_dtype(
        split.X_train[c])]
    if bad:
        raise Unprocessable(f"dataset: torch experiments need numeric features; column(s) "
                            f"{', '.join(bad[:5])} are not (use a scikit-learn experiment, "
                            "whose pipeline encodes categories)", field="dataset")


def torch_fit(arch: str, kwargs: dict[str, Any], cfg: TorchConfig, split: Split,
              ctx: FitContext) -> Fitted:
    """Train a torch module on the split (validation carved from train, seeded)."""
    numeric_features(split)
    x = split.X_train.to_numpy(dtype=np.float32)
    if split.task == "classification":
        assert split.classes is not None
        index = {c: i for i, c in enumerate(split.classes)}
        y = np.asarray([index[v] for v in split.y_train.tolist()], dtype=np.int64)
        n_out = len(split.classes)
        strat = y if np.bincount(y).min() >= 2 else None
    else:
        y = split.y_train.to_numpy(dtype=np.float32)
        n_out, strat = 1, None
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=cfg.val_size,
                                                random_state=cfg.seed, stratify=strat)
    device = pick_device(cfg.device)
    kwargs = {"n_features": x.shape[1], "n_outputs": n_out, **kwargs}
    module = build_seeded(arch, kwargs, cfg.seed)
    outcome = fit(module, x_tr, y_tr, x_val, y_val, cfg, split.task, device, ctx.on_epoch)
    tags = {k: str(v) for k, v in describe_device(device).items()}
    tags.update({"amp": str(outcome.amp), "best_epoch": str(outcome.best_epoch),
                 "stopped_early": str(outcome.stopped_early),
                 "requested_device": cfg.device})
    return Fitted(kind="torch", model=outcome.module, history=outcome.history, tags=tags,
                  arch=arch, kwargs=kwargs)


def _mlp(cfg: MLPConfig, split: Split, ctx: FitContext) -> Fitted:
    return torch_fit("mlp", {"hidden": cfg.hidden, "layers": cfg.layers,
                             "dropout": cfg.dropout}, cfg, split, ctx)


def _cnn(cfg: CNNConfig, split: Split, ctx: FitContext) -> Fitted:
    return torch_fit("cnn", {"channels": cfg.channels, "dropout": cfg.dropout}, cfg, split, ctx)


def _logreg(cfg: LogRegConfig, split: Split, ctx: FitContext) -> Fitted:
    return sklearn_fit(LogisticRegression(C=cfg.C, max_iter=cfg.max_iter), split)


def _forest(cfg: ForestConfig, split: Split, ctx: FitContext) -> Fitted:
    return sklearn_fit(RandomForestClassifier(
        n_estimators=cfg.n_estimators, max_depth=cfg.max_depth,
        min_samples_leaf=cfg.min_samples_leaf, random_state=cfg.seed, n_jobs=1), split)


def _boosting(cfg: BoostingConfig, split: Split, ctx: FitContext) -> Fitted:
    return sklearn_fit(GradientBoostingClassifier(
        n_estimators=cfg.n_estimators, learning_rate=cfg.learning_rate,
        max_depth=cfg.max_depth, random_state=cfg.seed), split)


def _ridge(cfg: RidgeConfig, split: Split, ctx: FitContext) -> Fitted:
    return sklearn_fit(Ridge(alpha=cfg.alpha), split)


register(Experiment("digits_mlp", MLPConfig, _mlp, "classification", "digits", "torch",
                    "torch MLP on 8x8 handwritten digits"))
register(Experiment("digits_cnn", CNNConfig, _cnn, "classification", "digits", "torch",
                    "small torch CNN on 8x8 handwritten digits"))
register(Experiment("breast_cancer_mlp", MLPConfig, _mlp, "classification", "breast_cancer",
                    "torch", "torch MLP on the Wisconsin breast cancer data"))
for _data in ("breast_cancer", "wine"):
    register(Experiment(f"{_data}_logreg", LogRegConfig, _logreg, "classification", _data,
                        "sklearn", f"logistic regression on {_data}"))
    register(Experiment(f"{_data}_rf", ForestConfig, _forest, "classification", _data,
                        "sklearn", f"random forest on {_data}"))
    register(Experiment(f"{_data}_gb", BoostingConfig, _boosting, "classification", _data,
                        "sklearn", f"gradient boosting on {_data}"))
register(Experiment("diabetes_ridge", RidgeConfig, _ridge, "regression", "diabetes", "sklearn",
                    "ridge regression of diabetes progression"))
