"""Torch modules that carry their own input normalisation, saved as safetensors + JSON.

A saved model is two files: ``weights.safetensors`` (the state dict, tensors only) and
``config.json`` (architecture, constructor arguments, feature names, classes). Nothing is
pickled; :func:`load_bundle` rebuilds the module from the config and loads the tensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"


class Normalize(nn.Module):
    """(x - mean) / std with the training split's statistics, kept as buffers."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def fit(self, x: torch.Tensor) -> Normalize:
        """Set mean/std from training features (std of a constant column becomes 1)."""
        std = x.std(dim=0)
        self.mean.copy_(x.mean(dim=0))
        self.std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch."""
        return (x - self.mean) / self.std


class TabularMLP(nn.Module):
    """MLP over tabular features; outputs logits (classification) or one value (regression)."""

    def __init__(self, n_features: int, n_outputs: int, hidden: int = 64, layers: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = Normalize(n_features)
        blocks: list[nn.Module] = []
        width = n_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits or predictions for a batch of raw features."""
        return self.net(self.norm(x))


class DigitsCNN(nn.Module):
    """A small CNN over 8x8 single-channel images given as 64 flat features."""

    def __init__(self, n_features: int, n_outputs: int, channels: int = 16,
                 dropout: float = 0.1) -> None:
        super().__init__()
        side = round(n_features ** 0.5)
        if side * side != n_features:
            raise ValueError(f"DigitsCNN needs a square image; got {n_features} features")
        self.side = side
        self.norm = Normalize(n_features)
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels * 2, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(channels * 2 * (side // 2) ** 2, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of flat images."""
        x = self.norm(x).view(-1, 1, self.side, self.side)
        return self.head(self.features(x))


ARCHITECTURES: dict[str, type[nn.Module]] = {"mlp": TabularMLP, "cnn": DigitsCNN}


def build(arch: str, kwargs: dict[str, Any]) -> nn.Module:
    """A fresh module of a known architecture."""
    return ARCHITECTURES[arch](**kwargs)


def build_seeded(arch: str, kwargs: dict[str, Any], seed: int) -> nn.Module:
    """A fresh module whose initial weights depend only on ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(arch, kwargs)


def save_bundle(module: nn.Module, meta: dict[str, Any], folder: Path) -> Path:
    """Write weights (safetensors) and config (JSON) for ``module`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    (folder / CONFIG).write_text(json.dumps(meta, indent=1, default=str))
    return folder


def load_bundle(weights: Path, config: Path,
                device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a module from its config and load its weights onto ``device``."""
    meta = json.loads(Path(config).read_text())
    module = build(meta["arch"], meta["kwargs"])
    module.load_state_dict(load_file(str(weights), device="cpu"))
    module.to(device).eval()
    return module, meta
