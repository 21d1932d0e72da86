"""scripts/gpu_check.sh: its CNN mirrors ours, and its logic runs on CPU (the dry run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from experiments.torch_models import DigitsCNN

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"


def embedded_program() -> str:
    text = SCRIPT.read_text()
    return text.split("<<'PYEOF'\n", 1)[1].rsplit("\nPYEOF", 1)[0]


def test_the_scripts_cnn_is_the_product_cnn() -> None:
    ns: dict[str, object] = {"__name__": "gpu_check"}
    exec(compile(embedded_program(), str(SCRIPT), "exec"), ns)
    theirs = ns["DigitsCNN"](channels=32).state_dict()  # type: ignore[operator]
    ours = DigitsCNN(64, 10, channels=32).state_dict()
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {
        k: tuple(v.shape) for k, v in ours.items()}


def test_dry_run_on_cpu_passes_its_checks(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(SCRIPT), "--quick", "--allow-cpu"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert all(report["checks"].values()) and report["agreement"] == 1.0
