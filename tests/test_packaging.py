"""The distribution's top-level packages are ours, and `.ci/run` runs the README's command."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["mlwb", "api", "workbench", "jobs", "experiments", "reports", "wb"]


def test_no_other_distribution_installs_our_top_level_names() -> None:
    """Generic names like `api` and `jobs` must belong to this distribution alone."""
    owners = importlib.metadata.packages_distributions()
    for name in PACKAGES:
        assert set(owners.get(name, [])) == {"ml-workbench"}, (name, owners.get(name))


def test_top_level_names_import_from_this_repository() -> None:
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        assert Path(spec.origin).resolve().is_relative_to(ROOT), (name, spec.origin)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in readme
    assert "scripts/test.sh" in ci


def test_pins_that_keep_the_stack_importable() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    text = " ".join(deps)
    assert "mlflow==3.17.2" in text and "pandas>=2.2,<3" in text and "plotly>=5.20,<6" in text
    assert any(d.startswith("torch>=") for d in deps), "torch must be a range, never a pin"
