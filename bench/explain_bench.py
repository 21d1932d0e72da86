"""Explain latency and accuracy: ours (mlwb.shapley) vs shap's KernelExplainer.

Run: ``.venv/bin/python bench/explain_bench.py`` (shap is optional: ``pip install shap``).

For one row of the breast-cancer data (30 features), against the same 100-row background:

* a linear model's probability-free output (closed form ``w_i * (x_i - mean_i)``): the
  maximum error of each method;
* a scaled logistic regression's probability of the predicted class, and a small torch MLP's:
  latency (median of several calls), how far the attributions are from summing to
  ``f(x) - E f(background)``, and each method's largest distance from a reference estimate
  made with 1,000 antithetic permutations (near-exact).

Printed as ours / reference ratios (below 1: ours is faster / closer).
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlwb.shapley import permutations, shapley

try:
    import shap
except ImportError:  # pragma: no cover - optional reference
    shap = None


def timed(fn: Callable[[], np.ndarray], repeat: int = 5) -> tuple[float, np.ndarray]:
    """Median seconds of ``fn`` and its last result."""
    times, out = [], np.zeros(0)
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    """Print the comparison."""
    data = load_breast_cancer(as_frame=True)
    x_all, y = data.data, data.target
    background = x_all.sample(100, random_state=0)
    row = x_all.iloc[[7]]

    lin = LinearRegression().fit(x_all, y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_all, y)
    torch.manual_seed(0)
    mean = torch.tensor(x_all.mean().to_numpy(), dtype=torch.float32)
    std = torch.tensor(x_all.std().to_numpy(), dtype=torch.float32)
    mlp = torch.nn.Sequential(torch.nn.Linear(30, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))

    def mlp_proba(frame: pd.DataFrame) -> np.ndarray:
        with torch.inference_mode():
            t = (torch.as_tensor(frame.to_numpy(np.float32)) - mean) / std
            return torch.softmax(mlp(t), dim=1).numpy()

    models: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
        "linear": lambda f: lin.predict(f),
        "logreg p(class)": lambda f: clf.predict_proba(f)[:, int(clf.predict(row)[0])],
        "torch MLP p(class)": lambda f: mlp_proba(f)[:, int(mlp_proba(row)[0].argmax())],
    }
    closed = lin.coef_ * (row.to_numpy()[0] - background.mean().to_numpy())
    print(f"{'model':<20}{'ours ms':>9}{'shap ms':>9}{'ratio':>7}   "
          f"{'ours sum err':>13}{'shap sum err':>13}{'ours err':>10}{'shap err':>10}")
    for name, f in models.items():
        ours_s, res = timed(lambda f=f: shapley(f, row, background).values)
        target = float(f(row)[0] - f(background).mean())
        truth = closed if name == "linear" else permutations(
            f, row, background, 1000, np.random.default_rng(1)).values
        ours_err = abs(res.sum() - target)
        line = f"{name:<20}{ours_s * 1e3:>9.1f}"
        if shap is None:
            print(line + "   (pip install shap for the reference)")
            continue

        def ref(f: Callable[[pd.DataFrame], np.ndarray] = f) -> np.ndarray:
            explainer = shap.KernelExplainer(lambda a: f(pd.DataFrame(a, columns=row.columns)),
                                             background.to_numpy())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.asarray(explainer.shap_values(row.to_numpy(), silent=True))[0]

        ref_s, ref_vals = timed(ref, repeat=3)
        ref_err = abs(ref_vals.sum() - target)
        print(line + f"{ref_s * 1e3:>9.1f}{ours_s / ref_s:>7.2f}   {ours_err:>13.2e}"
                     f"{ref_err:>13.2e}{np.abs(res - truth).max():>10.2e}"
                     f"{np.abs(ref_vals - truth).max():>10.2e}")
    print("err: largest distance from the closed form (linear) or a 1,000-permutation "
          "estimate; ratio: ours / shap latency")


if __name__ == "__main__":
    main()
