"""The self-contained GPU batching benchmark (`bench/batcher_gpu.py`) runs on the CPU here:
the script a GPU machine gets is the one the tests ran, with the API's real batcher."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from experiments.torch_models import DigitsCNN

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "batcher_gpu.py"


# A GPU machine has torch and numpy, and none of the project or its stack: importing any of
# these from the script fails the run.
BLOCKED = ("api", "mlwb", "experiments", "jobs", "wb", "workbench", "reports", "flask",
           "mlflow", "redis", "rq", "sklearn", "pandas", "duckdb", "pyarrow", "evidently")
RUN = """
import runpy, sys
blocked = set(sys.argv[1].split(","))
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ImportError(f"{name} is not on a GPU machine")
sys.meta_path.insert(0, Refuse())
script = sys.argv[2]
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""


def test_the_script_batches_on_the_cpu_with_torch_and_numpy_alone(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", RUN, ",".join(BLOCKED), str(SCRIPT), "--clients", "16",
         "--seconds", "1", "--warmup", "0.3", "--device", "cpu"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "device cpu, 16 client threads" in out.stdout
    rows = {int(m[1]): (float(m[2]), float(m[3])) for m in re.finditer(
        r"max batch\s+(\d+):\s+(\d+) req/s .*?([\d.]+) rows/pass", out.stdout)}
    assert set(rows) == {1, 64}
    assert rows[1][0] > 0 and rows[64][0] > 0
    assert rows[1][1] == 1.0
    assert rows[64][1] > 1.0  # 16 threads at once: passes carry several rows
    assert re.search(r"batched / unbatched throughput: [\d.]+x", out.stdout)


def test_the_import_guard_refuses_the_stack(tmp_path: Path) -> None:
    script = tmp_path / "uses_flask.py"
    script.write_text("import flask\n")
    out = subprocess.run([sys.executable, "-c", RUN, ",".join(BLOCKED), str(script)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "flask is not on a GPU machine" in out.stderr


def test_the_scripts_cnn_is_the_products_digits_cnn() -> None:
    # The same layers with the same shapes (the product's also has dropout and input
    # normalisation, which hold no weights that matter to a forward pass's cost).
    import importlib.util

    spec = importlib.util.spec_from_file_location("batcher_gpu", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theirs = module.DigitsCNN(channels=32)
    ours = DigitsCNN(n_features=64, n_outputs=10, channels=32)
    shapes = [tuple(p.shape) for n, p in ours.named_parameters() if not n.startswith("norm")]
    assert [tuple(p.shape) for p in theirs.parameters()] == shapes
    layers = [type(m).__name__ for m in ours.features]
    assert [type(m).__name__ for m in theirs.features] == layers
