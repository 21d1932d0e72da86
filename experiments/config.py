"""Typed, frozen experiment configs: a bad parameter is refused when the job is submitted.

Every field declares its type, default and range (``ge``/``le``); ``wb experiments show``
prints them and sweeps sample inside them. A field marked ``log=True`` is sampled on a log
scale by random search (learning rates, regularisation strengths).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def log_scale() -> dict[str, Any]:
    """``json_schema_extra`` marking a field to sample log-uniformly."""
    return {"log": True}


class ExperimentConfig(BaseModel):
    """Parameters every experiment takes: seed, split and which data."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    seed: int = Field(0, ge=0, le=2**31 - 1, description="seeds the split, init and shuffling")
    test_size: float = Field(0.2, ge=0.05, le=0.5, description="held-out fraction for metrics")
    dataset: str | None = Field(
        None, description="a data set added with `wb data add`, as NAME or NAME@VERSION "
        "(default: the experiment's built-in data)")
    model_name: str | None = Field(
        None, min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.-]+$",
        description="registered model name (default: the experiment's name)")


class TorchConfig(ExperimentConfig):
    """Parameters of every torch experiment."""

    epochs: int = Field(30, ge=1, le=1000,
                        description="most epochs (early stopping may end sooner)")
    lr: float = Field(3e-3, gt=0, le=1.0, json_schema_extra=log_scale(),
                      description="Adam learning rate")
    batch_size: int = Field(64, ge=1, le=8192, description="minibatch size")
    weight_decay: float = Field(0.0, ge=0, le=1.0, description="L2 penalty")
    patience: int = Field(5, ge=1, le=200, description="epochs without validation gain before stop")
    val_size: float = Field(0.15, ge=0.05, le=0.5, description="fraction of train kept for "
                            "early stopping")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
                        description="auto (cuda when present), cpu, cuda or cuda:N")
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")


class MLPConfig(TorchConfig):
    """A multilayer perceptron on tabular features."""

    hidden: int = Field(64, ge=1, le=4096, description="units per hidden layer")
    layers: int = Field(2, ge=1, le=8, description="hidden layers")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout after each hidden layer")


class CNNConfig(TorchConfig):
    """A small convolutional net on 8x8 images."""

    channels: int = Field(16, ge=1, le=256, description="filters in the first conv layer")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the classifier")


class LogRegConfig(ExperimentConfig):
    """Logistic regression."""

    C: float = Field(1.0, gt=0, le=1e4, json_schema_extra=log_scale(),
                     description="inverse regularisation strength")
    max_iter: int = Field(500, ge=10, le=100_000, description="solver iterations")


class ForestConfig(ExperimentConfig):
    """Random forest."""

    n_estimators: int = Field(100, ge=1, le=5000, description="trees")
    max_depth: int | None = Field(None, ge=1, le=100, description="tree depth (None: unlimited)")
    min_samples_leaf: int = Field(1, ge=1, le=1000, description="least samples in a leaf")


class BoostingConfig(ExperimentConfig):
    """Gradient boosting."""

    n_estimators: int = Field(100, ge=1, le=5000, description="boosting stages")
    learning_rate: float = Field(0.1, gt=0, le=1.0, json_schema_extra=log_scale(),
                                 description="shrinkage per stage")
    max_depth: int = Field(3, ge=1, le=32, description="depth of each tree")


class RidgeConfig(ExperimentConfig):
    """Ridge regression."""

    alpha: float = Field(1.0, ge=0, le=1e6, json_schema_extra=log_scale(),
                         description="L2 penalty")
