"""Explain predictions of any registered model: per-feature attributions that sum to its output.

The explained output is the prediction for regressors and the probability of the predicted
class for classifiers. The background is a fixed sample of the version's reference data (run
artifact ``reference/reference.parquet``), or its input example when that is absent. Models
and backgrounds load once per process and stay in ``services.extras["explainers"]``.
Attributions are Shapley values (:mod:`mlwb.shapley`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from mlwb.aliases import (
    check_alias,
    check_model_name,
    check_version,
    mlflow_client,
    recorded_aliases,
)
from mlwb.errors import InputError, NotFound, StoreError, Unprocessable, reason_of
from mlwb.promotions import serving_plan
from mlwb.registry import fetch_verified
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.shapley import Model, shapley
from mlwb.users import Principal

# Rows one request may explain (each costs up to shapley.EVAL_BUDGET model rows).
MAX_ROWS = 20
# Background rows sampled from the reference data (fixed seed: the same every load).
BACKGROUND_ROWS = 100
REFERENCE_ARTIFACT = "reference/reference.parquet"
_LOCK = threading.Lock()


@dataclass
class Explainer:
    """A loaded model version, its output function and its background sample."""

    name: str
    version: str
    features: list[str]
    background: pd.DataFrame
    background_source: str
    pyfunc: Any
    proba: Model | None  # class probabilities, for classifiers
    classes: list[Any] | None

    @classmethod
    def load(cls, services: Services, name: str, version: str) -> Explainer:
        """Load ``name`` version ``version`` and sample its background."""
        client = mlflow_client(services.settings)
        # The same verified download as serving: a version whose artifacts no longer match
        # the hash recorded at registration is not loaded here either.
        local, run_id = fetch_verified(client, services.engine, name, version,
                                       Path(services.settings.data_dir) / "serving-cache")
        try:
            pyfunc = mlflow.pyfunc.load_model(str(local))
        except Exception as exc:
            raise StoreError(f"model {name!r} version {version} could not be loaded: {exc}",
                             model=name, version=version) from None
        schema = pyfunc.metadata.get_input_schema()
        features = list(schema.input_names()) if schema is not None else []
        background, source = _background(services, run_id or None, pyfunc, features)
        if not features:
            features = list(background.columns)
        proba, classes = _probabilities(pyfunc)
        return cls(name, version, features, background[features].reset_index(drop=True),
                   source, pyfunc, proba, classes)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's single numeric output per row (regression / pyfunc)."""
        out = np.asarray(self.pyfunc.predict(frame))
        if out.ndim > 1 and out.shape[1] != 1:
            raise Unprocessable(f"model {self.name!r} returns {out.shape[1]} outputs per row; "
                                "explain supports one output or class probabilities")
        return out.reshape(-1).astype(float)

    def explain_row(self, row: pd.DataFrame) -> dict[str, Any]:
        """Attributions for one row (a one-row frame with the model's features)."""
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return self._explain_row(row)
        except (ValueError, OverflowError, TypeError, MlflowException) as exc:
            # The row passed validation, but the model refuses it (a scaler turning a huge
            # value into infinity, say): the caller's to fix, as MLflow's server says too.
            raise Unprocessable(f"model {self.name!r} could not score this row or its "
                                f"mixes with the background: {reason_of(exc)}") from None

    def _explain_row(self, row: pd.DataFrame) -> dict[str, Any]:
        if self.proba is not None:
            probs = self.proba(row)[0]
            k = int(np.argmax(probs))
            proba = self.proba

            def f(frame: pd.DataFrame) -> np.ndarray:
                return proba(frame)[:, k]

            label: Any = self.classes[k] if self.classes is not None else k
            output = f"probability of class {label}"
        else:
            f, output = self.predict, "prediction"
            label = float(self.predict(row)[0])
        result = shapley(f, row, self.background)
        return {"predicted": _plain(label), "output": output, "base_value": result.base_value,
                "output_value": result.output_value, "method": result.method,
                "attributions": dict(zip(self.features, result.values.tolist(), strict=True))}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _finite(value: Any) -> bool:
    """A finite number that fits a float64 (a huge JSON integer does not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _probabilities(pyfunc: Any) -> tuple[Model | None, list[Any] | None]:
    """``predict_proba`` and the classes of a classifier (sklearn or our torch pyfunc)."""
    raw: Any = None
    if "sklearn" in pyfunc.metadata.flavors:
        raw = pyfunc.get_raw_model()
    else:
        try:
            raw = pyfunc.unwrap_python_model()
        except (MlflowException, AttributeError, ValueError):
            raw = None
    classes = getattr(raw, "classes_", None)
    if raw is None or not hasattr(raw, "predict_proba") or classes is None:
        return None, None
    return (lambda frame: np.asarray(raw.predict_proba(frame), dtype=float)), [
        _plain(c) for c in np.asarray(classes).tolist()]


def _background(services: Services, run_id: str | None, pyfunc: Any,
                features: list[str]) -> tuple[pd.DataFrame, str]:
    frame, source = None, "reference"
    if run_id:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=REFERENCE_ARTIFACT,
                tracking_uri=services.settings.tracking_uri)
            frame = pd.read_parquet(path)
        except (MlflowException, OSError):
            frame = None
    if frame is None or (features and not set(features) <= set(frame.columns)):
        example = pyfunc.input_example
        if not isinstance(example, pd.DataFrame) or example.empty:
            raise Unprocessable("this model version has no reference data (run artifact "
                                f"{REFERENCE_ARTIFACT}) and no input example to explain "
                                "against; log one with the model")
        frame, source = example, "input_example"
    if len(frame) > BACKGROUND_ROWS:
        frame = frame.sample(BACKGROUND_ROWS, random_state=0)
    return frame, source


def explainer(services: Services, name: str, version: str) -> Explainer:
    """The process's explainer of ``name`` version ``version`` (loaded on first use)."""
    cache: dict[tuple[str, str], Explainer] = services.extras.setdefault("explainers", {})
    key = (name, version)
    if key not in cache:
        with _LOCK:
            if key not in cache:
                cache[key] = Explainer.load(services, name, version)
    return cache[key]


def rows_frame(instances: Any, ex: Explainer) -> pd.DataFrame:
    """Instances as a frame with the background's dtypes; errors name the row and column."""
    if not isinstance(instances, list) or not instances:
        raise InputError('send {"instances": [{"feature": value, ...}, ...]}')
    if len(instances) > MAX_ROWS:
        raise InputError(f"at most {MAX_ROWS} rows per explain request; got {len(instances)}")
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise InputError(f"instances[{i}] must be an object of feature values", index=i)
        missing = [c for c in ex.features if c not in row]
        if missing:
            raise Unprocessable(f"instances[{i}] is missing feature(s) {', '.join(missing)}",
                                index=i, column=missing[0])
        extra = sorted(set(row) - set(ex.features))
        if extra:
            raise InputError(f"instances[{i}] has unknown feature(s) {', '.join(extra)}",
                             index=i, column=extra[0])
        for c in ex.features:
            numeric = pd.api.types.is_numeric_dtype(ex.background[c])
            v = row[c]
            bad = v is None or (numeric and (isinstance(v, bool) or not isinstance(
                v, int | float) or not _finite(v)))
            if bad:
                raise Unprocessable(f"instances[{i}].{c} must be a finite number, got {v!r}",
                                    index=i, column=c)
            if pd.api.types.is_integer_dtype(ex.background[c]) and float(v) != int(v):
                raise Unprocessable(f"instances[{i}].{c} must be a whole number, got {v!r}",
                                    index=i, column=c)
    try:
        frame = pd.DataFrame(instances, columns=ex.features)
        return frame.astype(ex.background.dtypes.to_dict())
    except (TypeError, ValueError, OverflowError) as exc:
        raise Unprocessable(f"instances do not fit the model's column types: {exc}") from None


def explain(services: Services, principal: Principal, model: str, instances: Any,
            version: Any = None, alias: str | None = None) -> dict[str, Any]:
    """Attributions for each instance, for a version, an alias, or (default) the champion."""
    principal.require(Role.viewer, Scope.predict, "explaining predictions")
    if version is not None or alias is not None:  # as for predictions
        principal.require(Role.scientist, Scope.predict, "asking for a specific model version")
    check_model_name(model)
    if version is not None and alias is not None:
        raise InputError("give version or alias, not both")
    if version is not None:
        version = check_version(version)
    else:
        alias = check_alias(alias or "champion")
        version = (serving_plan(services.engine, model).champion if alias == "champion"
                   else recorded_aliases(services.engine, model).get(alias))
        if version is None:
            raise NotFound(f"{model!r} has no {alias} in the product's record; promote one "
                           f"(`wb models promote {model} VERSION --alias {alias}`) or pass a "
                           "version", model=model, alias=alias)
    ex = explainer(services, model, version)
    frame = rows_frame(instances, ex)
    return {"model": model, "version": version, "alias": alias,
            "background_rows": len(ex.background), "background_source": ex.background_source,
            "explanations": [ex.explain_row(frame.iloc[[i]]) for i in range(len(frame))]}
