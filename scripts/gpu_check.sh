#!/usr/bin/env bash
# Self-contained CUDA check: needs only Python + torch (no MLflow, Flask, Redis, sklearn,
# numpy or network). Trains the digits CNN (same architecture as
# experiments/torch_models.py:DigitsCNN) on CUDA with mixed precision and on CPU, reports the
# epoch times, and checks that the CUDA-trained weights give the same predictions on CPU.
#
#   scripts/gpu_check.sh            # full check on a GPU box (< 6 minutes)
#   scripts/gpu_check.sh --quick    # small run (CI / CPU-only dry run of the same code)
#
# Exit 0: all checks passed (or CUDA absent and --allow-cpu given); 1: a check failed;
# 2: no CUDA device. With $OUT set, writes $OUT/gpu_check.json.
set -euo pipefail
PY="${PYTHON:-python3}"
exec "$PY" - "$@" <<'PYEOF'
import json, math, os, sys, time

import torch
from torch import nn

args = set(sys.argv[1:])
QUICK = "--quick" in args
ALLOW_CPU = "--allow-cpu" in args
SEED = 0
N_TRAIN, N_TEST = (1500, 500) if QUICK else (20000, 4000)
EPOCHS = 2 if QUICK else 5
BATCH = 256


def log(msg):
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def synthetic_digits(n, seed):
    """10 seeded 8x8 prototype strokes + noise + shifts: a learnable stand-in for digits."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(10, 8, 8, generator=g) > 0.6).float() * 16
    y = torch.randint(0, 10, (n,), generator=g)
    x = protos[y] + torch.randn(n, 8, 8, generator=g) * 3.0
    shifts = torch.randint(-1, 2, (n, 2), generator=g)
    x = torch.stack([torch.roll(img, (int(s[0]), int(s[1])), (0, 1)) for img, s in zip(x, shifts)])
    return x.clamp(0, 16).reshape(n, 64), y


class Normalize(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    def forward(self, x):
        return (x - self.mean) / self.std


class DigitsCNN(nn.Module):
    """Mirror of experiments.torch_models.DigitsCNN (kept identical by tests)."""

    def __init__(self, n_features=64, n_outputs=10, channels=16, dropout=0.1):
        super().__init__()
        side = int(round(n_features ** 0.5))
        self.side = side
        self.norm = Normalize(n_features)
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels * 2, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(channels * 2 * (side // 2) ** 2, n_outputs))

    def forward(self, x):
        x = self.norm(x).view(-1, 1, self.side, self.side)
        return self.head(self.features(x))


def make_model(x_train):
    torch.manual_seed(SEED)
    m = DigitsCNN(channels=32)
    m.norm.mean.copy_(x_train.mean(0))
    std = x_train.std(0)
    m.norm.std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))
    return m


def train(device, x, y, amp):
    model = make_model(x).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = nn.CrossEntropyLoss()
    xd, yd = x.to(device), y.to(device)
    g = torch.Generator().manual_seed(SEED)
    times, losses = [], []
    for epoch in range(EPOCHS):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=g).to(device)
        total = 0.0
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                loss = loss_fn(model(xd[idx]), yd[idx])
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += loss.detach().float().item() * len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(total / len(x))
        log(f"{device.type}{' amp' if amp else ''} epoch {epoch + 1}/{EPOCHS}: "
            f"loss={losses[-1]:.4f} {times[-1]:.3f}s")
    return model.eval(), times, losses


def main():
    report = {"torch": torch.__version__, "quick": QUICK, "checks": {}}
    cuda = torch.cuda.is_available()
    if cuda:
        report["gpu"] = torch.cuda.get_device_name(0)
        log(f"CUDA device: {report['gpu']} (torch {torch.__version__})")
    elif not ALLOW_CPU:
        log("no CUDA device visible (torch.cuda.is_available() is False); "
            "run with --allow-cpu for a CPU-only dry run")
        return 2
    else:
        log("no CUDA device: dry run with the 'GPU' leg on CPU (no AMP)")
    torch.manual_seed(SEED)
    x, y = synthetic_digits(N_TRAIN + N_TEST, SEED)
    xtr, ytr, xte, yte = x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cpu_model, cpu_times, cpu_losses = train(torch.device("cpu"), xtr, ytr, amp=False)
    dev = torch.device("cuda" if cuda else "cpu")
    gpu_model, gpu_times, gpu_losses = train(dev, xtr, ytr, amp=cuda)
    # Steady-state epoch time: skip the first (CUDA init, cudnn autotune, allocator warm-up).
    cpu_epoch = sum(cpu_times[1:]) / max(1, len(cpu_times) - 1)
    gpu_epoch = sum(gpu_times[1:]) / max(1, len(gpu_times) - 1)
    report.update(cpu_epoch_s=cpu_epoch, gpu_epoch_s=gpu_epoch,
                  speedup=cpu_epoch / gpu_epoch if gpu_epoch else None,
                  cpu_losses=cpu_losses, gpu_losses=gpu_losses)
    log(f"epoch time: cpu {cpu_epoch:.3f}s, {dev.type}{' amp' if cuda else ''} "
        f"{gpu_epoch:.3f}s -> {cpu_epoch / gpu_epoch:.1f}x")
    # The CUDA-trained weights, moved to CPU, must predict what they predicted on CUDA.
    state = {k: v.detach().cpu() for k, v in gpu_model.state_dict().items()}
    on_cpu = DigitsCNN(channels=32)
    on_cpu.load_state_dict(state)
    on_cpu.eval()
    with torch.no_grad():
        logits_dev = gpu_model(xte.to(dev)).float().cpu()
        logits_cpu = on_cpu(xte).float()
    agree = (logits_dev.argmax(1) == logits_cpu.argmax(1)).float().mean().item()
    max_diff = (logits_dev - logits_cpu).abs().max().item()
    acc_dev = (logits_cpu.argmax(1) == yte).float().mean().item()
    acc_cpu_trained = (cpu_model(xte).argmax(1) == yte).float().mean().item()
    checks = report["checks"]
    checks["loss_went_down"] = gpu_losses[-1] < gpu_losses[0] and cpu_losses[-1] < cpu_losses[0]
    checks["predictions_agree_on_cpu"] = agree >= 0.999
    checks["logits_close"] = max_diff < 1e-2 * max(1.0, logits_cpu.abs().max().item())
    checks["learned"] = acc_dev > 0.5
    checks["no_nan"] = all(math.isfinite(v) for v in gpu_losses)
    report.update(agreement=agree, max_logit_diff=max_diff, accuracy_gpu_weights_on_cpu=acc_dev,
                  accuracy_cpu_trained=acc_cpu_trained)
    log(f"CUDA weights on CPU: agreement {agree:.4f}, max |logit diff| {max_diff:.2e}, "
        f"accuracy {acc_dev:.3f} (CPU-trained {acc_cpu_trained:.3f})")
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "gpu_check.json"), "w") as fh:
            json.dump(report, fh, indent=1)
    failed = [k for k, ok in checks.items() if not ok]
    log("PASS" if not failed else f"FAIL: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
PYEOF
