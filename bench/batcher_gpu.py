"""Micro-batching on a GPU (or CPU): 64 request threads, batched forward passes vs one each.

Self-contained for a bare GPU machine: needs only torch and numpy (no Flask, MLflow, Redis);
it loads ``api/serving/batcher.py`` by file path. Each of ``--clients`` threads sends
single-row requests to a digits CNN (``experiments.torch_models.DigitsCNN``'s shape,
rebuilt here) for ``--seconds``; the same run is repeated with a maximum batch of 1.

Usage: python bench/batcher_gpu.py [--clients 64] [--seconds 10] [--warmup 2] [--device auto]
"""

from __future__ import annotations

import argparse
import importlib.util
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent.parent


def load_batcher() -> type:
    """``api.serving.batcher.Batcher`` without importing the API package."""
    spec = importlib.util.spec_from_file_location(
        "batcher", HERE / "api" / "serving" / "batcher.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Batcher  # type: ignore[no-any-return]


class DigitsCNN(nn.Module):
    """Same layers as experiments.torch_models.DigitsCNN (8x8 images as 64 features)."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels * 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * 2 * 16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for flat 8x8 images."""
        return self.head(self.features(x.view(-1, 1, 8, 8)))


def run(batcher_cls: type, module: nn.Module, device: torch.device, clients: int,
        seconds: float, max_batch: int) -> tuple[float, float, float]:
    """Requests/s, p99 latency (ms) and mean rows per pass with ``max_batch``."""

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.as_tensor(x, device=device))
        return out.float().cpu().numpy()

    batcher = batcher_cls(forward, max_batch)
    stop = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(clients, 1, 64)).astype(np.float32)

    def client(i: int) -> None:
        lat = latencies[i]
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            batcher(rows[i])
            lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    flat = np.concatenate([np.array(x) for x in latencies if x])
    per_pass = batcher.rows / max(batcher.passes, 1) if max_batch > 1 else 1.0
    return len(flat) / took, float(np.percentile(flat, 99) * 1e3), per_pass


def main() -> None:
    """Print batched vs unbatched throughput side by side."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2,
                        help="seconds of batched load first (CUDA context, kernels)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(0)
    module = DigitsCNN().to(device).eval()
    batcher_cls = load_batcher()
    run(batcher_cls, module, device, args.clients, args.warmup, 64)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, {args.clients} client threads, {args.seconds:.0f} s each")
    results = {}
    for max_batch in (1, 64):
        rps, p99, per_pass = run(batcher_cls, module, device, args.clients, args.seconds,
                                 max_batch)
        results[max_batch] = rps
        print(f"max batch {max_batch:>3}: {rps:9.0f} req/s  p99 {p99:7.2f} ms  "
              f"{per_pass:5.1f} rows/pass", flush=True)
    print(f"batched / unbatched throughput: {results[64] / results[1]:.2f}x")


if __name__ == "__main__":
    main()
