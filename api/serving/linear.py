"""A compiled fast path for the commonest tabular model: scaling plus a linear model.

An sklearn Pipeline whose steps are any number of ``StandardScaler`` followed by a
``LogisticRegression`` or ``LinearRegression`` is folded into one affine map
``x @ W + b`` (scalers folded into the weights are *not* used: they would change the
floating-point result; the scaling is applied as sklearn applies it). The answers equal
sklearn's, prediction for prediction; ``tests/serving`` checks them against
``mlflow.pyfunc``. Anything else returns None and keeps the generic path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit

from api.serving.output import Output


@dataclass
class LinearKernel:
    """Scalers, then ``x @ coef.T + intercept``, then the link function."""

    names: list[str]
    scalers: list[tuple[np.ndarray | None, np.ndarray | None]]  # (mean, scale) per scaler
    coef: np.ndarray
    intercept: np.ndarray | float
    classes: np.ndarray | None  # None for regression
    keys: list[str] = field(init=False)  # the classes as probability keys

    def __post_init__(self) -> None:
        self.keys = [] if self.classes is None else [str(c) for c in self.classes.tolist()]

    def predict(self, x: np.ndarray) -> Output:
        """Predictions (and probabilities) for a float64 matrix in ``names`` order."""
        for mean, scale in self.scalers:
            if mean is not None:
                x = x - mean
            if scale is not None:
                x = x / scale
            if not np.isfinite(x).all():  # what sklearn's next step checks, and refuses
                raise ValueError("Input X contains infinity or a value too large for "
                                 "dtype('float64').")
        scores = x @ self.coef.T + self.intercept
        if self.classes is None:
            return Output(scores.ravel().tolist() if scores.ndim > 1 and scores.shape[1] == 1
                          else scores.tolist())
        if scores.shape[1] == 1:  # binary: sklearn's expit, then [1 - p, p]
            p1 = expit(scores[:, 0])
            proba = np.empty((len(p1), 2))  # column_stack's result, without its wrapper
            proba[:, 0] = 1 - p1
            proba[:, 1] = p1
            preds = self.classes[(scores[:, 0] > 0).astype(int)]
        else:  # multinomial: softmax, argmax of the scores
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            proba = e / e.sum(axis=1, keepdims=True)
            preds = self.classes[scores.argmax(axis=1)]
        keys = self.keys
        return Output(preds.tolist(), [dict(zip(keys, row, strict=True))
                                       for row in proba.tolist()])


def compile_linear(model: Any, names: list[str]) -> LinearKernel | None:
    """A kernel equal to ``model`` if it is scalers + a plain linear model, else None."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [s for _, s in model.steps] if isinstance(model, Pipeline) else [model]
    *pre, final = steps
    scalers: list[tuple[np.ndarray | None, np.ndarray | None]] = []
    for step in pre:
        if type(step) is not StandardScaler:
            return None
        scalers.append((step.mean_ if step.with_mean else None,
                        step.scale_ if step.with_std else None))
    if list(getattr(model, "feature_names_in_", names)) != names:
        return None
    if type(final) is LogisticRegression:
        return LinearKernel(names, scalers, np.asarray(final.coef_),
                            np.asarray(final.intercept_), np.asarray(final.classes_))
    if type(final) is LinearRegression:
        coef = np.atleast_2d(final.coef_)
        return LinearKernel(names, scalers, coef, np.asarray(final.intercept_), None)
    return None
