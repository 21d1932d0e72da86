"""Demo data for `wb demo`: real runs of several built-in experiments, trained in-process."""

from __future__ import annotations

from typing import Any

from mlwb.services import Services

# (experiment, params): quick on two CPU cores, a mix of scikit-learn and torch.
DEMO_RUNS: list[tuple[str, dict[str, Any]]] = [
    ("breast_cancer_logreg", {}),
    ("breast_cancer_rf", {"n_estimators": 50}),
    ("wine_gb", {"n_estimators": 50}),
    ("diabetes_ridge", {}),
    ("breast_cancer_mlp", {"epochs": 15, "device": "cpu"}),
    ("digits_mlp", {"epochs": 10, "device": "cpu"}),
]


def seed_runs(services: Services) -> list[str]:
    """Train the demo experiments synchronously; each is one MLflow run with a registered
    model version (hash recorded). Returns the run ids. Call once (the caller guards it)."""
    from experiments.runner import RunOptions, run_experiment
    from jobs.lifecycle import record_event

    run_ids = []
    for name, params in DEMO_RUNS:
        result = run_experiment(services, name, params, RunOptions(tags={"wb.demo": "1"}))
        record_event(services.sink, f"demo-{result.run_id[:12]}", "finished", result.run_id,
                     experiment=name, metrics=result.metrics, version=result.version)
        run_ids.append(result.run_id)
    return run_ids
