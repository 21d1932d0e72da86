"""Shapley values of one row's model output against a background sample (model-agnostic).

The value of a coalition S is the mean output over the background rows with the features in
S set to the row's values (interventional Shapley, as KernelSHAP estimates it). With few
features every coalition is enumerated (exact); with many, antithetic random permutations
are walked. Both give attributions that sum exactly to ``f(x) - mean f(background)``, and
for a linear model both give the closed form ``w_i * (x_i - mean_i)`` for any sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import factorial

import numpy as np
import pandas as pd

# Exact enumeration (2^d coalitions) up to this many features; sampled permutations above.
EXACT_MAX_FEATURES = 10
# Rows given to the model per explained row, at most (bounds latency: ~50k rows is tens of ms
# for a linear model or a small MLP on one CPU core).
EVAL_BUDGET = 60_000
# Permutations for the sampled estimate, at least / at most (even: antithetic pairs).
MIN_PERMUTATIONS = 8
MAX_PERMUTATIONS = 64

Model = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class Attribution:
    """Base value (mean output on the background), the row's output, one value per feature."""

    base_value: float
    output_value: float
    values: np.ndarray
    method: str


def coalition_values(f: Model, x: pd.DataFrame, background: pd.DataFrame,
                     masks: np.ndarray) -> np.ndarray:
    """Mean of ``f`` over the background with masked-in features taken from ``x`` (one row)."""
    k, b = len(masks), len(background)
    out = np.empty(k)
    step = max(1, EVAL_BUDGET // b)
    for start in range(0, k, step):
        part = masks[start:start + step]
        n = len(part)
        cols = {}
        for j, col in enumerate(background.columns):
            on = np.repeat(part[:, j], b)
            cols[col] = np.where(on, x[col].to_numpy()[0], np.tile(background[col].to_numpy(), n))
        frame = pd.DataFrame(cols).astype(background.dtypes.to_dict(), copy=False)
        out[start:start + n] = np.asarray(f(frame), dtype=float).reshape(n, b).mean(axis=1)
    return out


def exact(f: Model, x: pd.DataFrame, background: pd.DataFrame) -> Attribution:
    """Shapley values by enumerating all 2^d coalitions."""
    d = x.shape[1]
    ids = np.arange(2 ** d)
    masks = ((ids[:, None] >> np.arange(d)) & 1).astype(bool)
    v = coalition_values(f, x, background, masks)
    sizes = masks.sum(axis=1)
    weight = np.array([factorial(s) * factorial(d - s - 1) / factorial(d) for s in range(d)])
    phi = np.empty(d)
    for i in range(d):
        without = ids[~masks[:, i]]
        phi[i] = np.sum(weight[sizes[without]] * (v[without | (1 << i)] - v[without]))
    return Attribution(float(v[0]), float(v[-1]), phi, "exact")


def permutations(f: Model, x: pd.DataFrame, background: pd.DataFrame, n: int,
                 rng: np.random.Generator) -> Attribution:
    """Shapley values estimated from ``n`` antithetic permutations (sums exactly)."""
    d = x.shape[1]
    perms = []
    for _ in range(max(1, n // 2)):
        p = rng.permutation(d)
        perms += [p, p[::-1]]
    order = np.array(perms)
    m = len(order)
    rank = np.empty_like(order)
    rank[np.arange(m)[:, None], order] = np.arange(d)
    # Step k of permutation r has on the features ranked before k.
    masks = (rank[:, None, :] < np.arange(d + 1)[None, :, None]).reshape(-1, d)
    unique, inverse = np.unique(masks, axis=0, return_inverse=True)
    v = coalition_values(f, x, background, unique)[inverse.reshape(-1)].reshape(m, d + 1)
    phi = np.zeros(d)
    np.add.at(phi, order, np.diff(v, axis=1))
    return Attribution(float(v[0, 0]), float(v[0, d]), phi / m, f"permutation({m})")


def shapley(f: Model, x: pd.DataFrame, background: pd.DataFrame,
            rng: np.random.Generator | None = None) -> Attribution:
    """Exact Shapley values for few features, sampled permutations for many."""
    d, b = x.shape[1], len(background)
    if d <= EXACT_MAX_FEATURES:
        keep = max(1, min(b, EVAL_BUDGET // 2 ** d))
        return exact(f, x, background.iloc[:keep])
    n = int(np.clip(EVAL_BUDGET // ((d + 1) * b), MIN_PERMUTATIONS, MAX_PERMUTATIONS))
    return permutations(f, x, background, n - n % 2, rng or np.random.default_rng(0))
