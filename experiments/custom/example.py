"""An example of adding your own experiment in one file: k-nearest neighbours on wine.

Copy this module, change the config and the fit function, and it shows up in
`wb experiments list`, `wb run`, `POST /api/jobs` and the workbench.
"""

from __future__ import annotations

from pydantic import Field
from sklearn.neighbors import KNeighborsClassifier

from experiments.builtin import sklearn_fit
from experiments.config import ExperimentConfig
from experiments.data import Split
from experiments.registry import Experiment, FitContext, Fitted, register


class KNNConfig(ExperimentConfig):
    """k-nearest neighbours."""

    n_neighbors: int = Field(5, ge=1, le=200, description="neighbours that vote")
    weights: str = Field("uniform", pattern="^(uniform|distance)$",
                         description="uniform or distance-weighted votes")


def fit_knn(cfg: KNNConfig, split: Split, ctx: FitContext) -> Fitted:
    """A Pipeline(preprocessing, KNN): the scaling travels with the model."""
    return sklearn_fit(KNeighborsClassifier(n_neighbors=cfg.n_neighbors, weights=cfg.weights),
                       split)


register(Experiment("wine_knn", KNNConfig, fit_knn, "classification", "wine", "sklearn",
                    "k-nearest neighbours on wine (example of a custom experiment)"))
