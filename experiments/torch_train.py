"""The torch training loop: seeded, early stopping, per-epoch metrics, AMP on CUDA."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from experiments.config import TorchConfig

EpochHook = Callable[[dict[str, float]], None]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class FitOutcome:
    """What the loop produced: the best module, the per-epoch history and where it ran."""

    module: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    device: str = "cpu"
    amp: bool = False
    stopped_early: bool = False


def _evaluate(module: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str,
              loss_fn: nn.Module) -> dict[str, float]:
    module.eval()
    with torch.no_grad():
        out = module(x).float()
        if task == "classification":
            loss = loss_fn(out, y).item()
            return {"val_loss": loss, "val_accuracy": (out.argmax(1) == y).float().mean().item()}
        loss = loss_fn(out[:, 0], y).item()
        return {"val_loss": loss, "val_rmse": math.sqrt(loss)}


def fit(module: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
        y_val: np.ndarray, cfg: TorchConfig, task: str, device: torch.device,
        on_epoch: EpochHook | None = None) -> FitOutcome:
    """Train ``module`` with Adam; stop after ``cfg.patience`` epochs without a better val loss.

    The returned module holds the best epoch's weights. ``on_epoch`` gets each epoch's
    metrics (epoch, train_loss, val_loss, val_accuracy or val_rmse, seconds).
    """
    seed_everything(cfg.seed)
    ydtype = torch.long if task == "classification" else torch.float32
    xt = torch.as_tensor(x_train, dtype=torch.float32)
    module.norm.fit(xt)  # type: ignore[operator, union-attr]
    module.to(device)
    xt, yt = xt.to(device), torch.as_tensor(y_train, dtype=ydtype, device=device)
    xv = torch.as_tensor(x_val, dtype=torch.float32, device=device)
    yv = torch.as_tensor(y_val, dtype=ydtype, device=device)
    loss_fn: nn.Module = nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    gen = torch.Generator().manual_seed(cfg.seed)
    outcome = FitOutcome(module=module, device=str(device), amp=use_amp)
    best_loss, best_state, waited = math.inf, copy.deepcopy(module.state_dict()), 0
    n = xt.shape[0]
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        module.train()
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for i in range(0, n, cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                out = module(xb)
                loss = loss_fn(out if task == "classification" else out[:, 0], yb)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += loss.item() * len(idx)
        metrics = {"epoch": float(epoch), "train_loss": total / n,
                   **_evaluate(module, xv, yv, task, loss_fn)}
        metrics["epoch_seconds"] = time.perf_counter() - started
        outcome.history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
        if metrics["val_loss"] < best_loss - 1e-6:
            best_loss, best_state, waited = metrics["val_loss"], copy.deepcopy(
                module.state_dict()), 0
            outcome.best_epoch = epoch
        else:
            waited += 1
            if waited >= cfg.patience:
                outcome.stopped_early = epoch < cfg.epochs
                break
    module.load_state_dict(best_state)
    module.eval()
    return outcome


def predict(module: nn.Module, x: np.ndarray, device: torch.device) -> np.ndarray:
    """Raw outputs (logits or values) for ``x`` as float32 NumPy."""
    module.eval()
    with torch.no_grad():
        out = module(torch.as_tensor(x, dtype=torch.float32, device=device)).float()
    return out.cpu().numpy()


def describe_device(device: torch.device) -> dict[str, Any]:
    """Device facts for the run's tags."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
