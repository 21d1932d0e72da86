"""Training data: the built-in scikit-learn sets or a stored data set, split by seed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split

from mlwb.datasets import DatasetStore, check_target, content_hash
from mlwb.errors import Unprocessable

# Built-in data, shipped inside scikit-learn (no download at run time).
BUILTIN: dict[str, Callable[..., Any]] = {
    "digits": skd.load_digits,
    "breast_cancer": skd.load_breast_cancer,
    "wine": skd.load_wine,
    "diabetes": skd.load_diabetes,
}
TARGET = "target"


@dataclass(frozen=True)
class Split:
    """A train/test split with everything a run records about where it came from."""

    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    target: str
    task: str  # "classification" or "regression"
    classes: list[Any] | None
    dataset: str
    dataset_version: str
    seed: int
    test_size: float

    @property
    def feature_names(self) -> list[str]:
        """Feature columns in model input order."""
        return list(self.X_train.columns)

    def reference(self) -> pd.DataFrame:
        """The training split, features and target: the reference for drift checks."""
        return self.X_train.assign(**{self.target: self.y_train.to_numpy()})


def load_builtin(name: str) -> pd.DataFrame:
    """A built-in data set as one frame with a ``target`` column."""
    bunch = BUILTIN[name](as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame


def load_frame(ref: str | None, default: str, store: DatasetStore | None) -> tuple[
        pd.DataFrame, str, str, str]:
    """(frame, target, dataset name, version) for a data set ref or the built-in default."""
    if ref is None or ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:") if ref else default
        if name not in BUILTIN:
            raise Unprocessable(f"dataset: no built-in data set {name!r}; built-ins are "
                                f"{', '.join(BUILTIN)}", field="dataset")
        frame = load_builtin(name)
        return frame, TARGET, f"builtin:{name}", content_hash(frame)
    if store is None:
        raise Unprocessable("dataset: stored data sets need the state DB", field="dataset")
    dv = store.resolve(ref)
    frame = store.load(dv)
    check_target(frame, dv.target, dv.ref)
    return frame, dv.target, dv.name, dv.version


def make_split(frame: pd.DataFrame, target: str, task: str, test_size: float, seed: int,
               dataset: str, version: str) -> Split:
    """Split ``frame`` reproducibly (stratified for classification)."""
    frame = frame.dropna(subset=[target])
    X = frame.drop(columns=[target])
    y = frame[target]
    classes: list[Any] | None = None
    stratify = None
    if task == "classification":
        values = np.unique(y.to_numpy())
        classes = [v.item() if hasattr(v, "item") else v for v in values]
        if len(classes) < 2:
            raise Unprocessable(f"dataset: target {target!r} has one class; a classifier "
                                "needs two or more", field="dataset")
        if y.value_counts().min() >= 2:
            stratify = y
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=stratify)
    return Split(X_train.reset_index(drop=True), X_test.reset_index(drop=True),
                 y_train.reset_index(drop=True), y_test.reset_index(drop=True), target, task,
                 classes, dataset, version, seed, test_size)
