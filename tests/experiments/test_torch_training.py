"""Torch training tiers: a short real run whose loss goes down, seeding, early stopping,
safetensors round trip, and the CPU fallback when CUDA is asked for but absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from experiments.config import CNNConfig, MLPConfig
from experiments.data import load_builtin
from experiments.pyfunc import pick_device
from experiments.torch_models import (
    CONFIG,
    WEIGHTS,
    build,
    build_seeded,
    load_bundle,
    save_bundle,
)
from experiments.torch_train import fit


def digits() -> tuple[np.ndarray, np.ndarray]:
    frame = load_builtin("digits")
    return frame.drop(columns=["target"]).to_numpy(np.float32), frame["target"].to_numpy()


def test_short_training_lowers_the_loss_and_reports_every_epoch() -> None:
    x, y = digits()
    seen: list[dict[str, float]] = []
    out = fit(build("mlp", {"n_features": 64, "n_outputs": 10}), x[:1200], y[:1200],
              x[1200:], y[1200:], MLPConfig(epochs=5, patience=5), "classification",
              torch.device("cpu"), seen.append)
    assert [h["epoch"] for h in seen] == [1, 2, 3, 4, 5]
    assert seen[-1]["train_loss"] < seen[0]["train_loss"] / 2
    assert seen[-1]["val_accuracy"] > 0.85
    assert out.device == "cpu" and out.amp is False  # AMP is for CUDA only


def test_same_seed_same_weights_and_early_stopping() -> None:
    x, y = digits()
    cfg = CNNConfig(epochs=2, seed=7, batch_size=128)
    a = fit(build_seeded("cnn", {"n_features": 64, "n_outputs": 10}, 7), x[:600], y[:600],
            x[600:800], y[600:800], cfg, "classification", torch.device("cpu"))
    torch.manual_seed(123)  # a different global state must not matter
    b = fit(build_seeded("cnn", {"n_features": 64, "n_outputs": 10}, 7), x[:600], y[:600],
            x[600:800], y[600:800], cfg, "classification", torch.device("cpu"))
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    # A learning rate far too high diverges; patience 1 stops it long before 200 epochs.
    wild = fit(build("mlp", {"n_features": 64, "n_outputs": 10}), x[:600], y[:600],
               x[600:800], y[600:800], MLPConfig(epochs=200, patience=1, lr=1.0),
               "classification", torch.device("cpu"))
    assert wild.stopped_early and len(wild.history) < 200


def test_bundle_is_safetensors_and_json_and_round_trips(tmp_path: Path) -> None:
    x, _ = digits()
    module = build("mlp", {"n_features": 64, "n_outputs": 10, "hidden": 8})
    module.norm.fit(torch.as_tensor(x))  # type: ignore[operator]
    meta = {"arch": "mlp", "kwargs": {"n_features": 64, "n_outputs": 10, "hidden": 8},
            "feature_names": [f"f{i}" for i in range(64)], "classes": list(range(10))}
    save_bundle(module, meta, tmp_path)
    assert json.loads((tmp_path / CONFIG).read_text())["arch"] == "mlp"
    assert (tmp_path / WEIGHTS).read_bytes()[8:9] == b"{"  # safetensors: JSON header
    again, _ = load_bundle(tmp_path / WEIGHTS, tmp_path / CONFIG)
    module.eval()
    with torch.no_grad():
        t = torch.as_tensor(x[:5])
        assert torch.allclose(module(t), again(t))
    # normalisation travels inside the module
    assert torch.allclose(again.norm.mean, torch.as_tensor(x).mean(0))  # type: ignore[union-attr, arg-type]


def test_cuda_request_falls_back_to_cpu_when_absent() -> None:
    device = pick_device("cuda")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu").type == "cpu"
