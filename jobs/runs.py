"""Reproducing a run: the same experiment, config, data set version, split and seed."""

from __future__ import annotations

import json
from typing import Any

from mlflow.exceptions import MlflowException

from mlwb.errors import NotFound, Unprocessable
from mlwb.services import Services


def run_recipe(services: Services, run_id: str) -> tuple[str, dict[str, Any]]:
    """(experiment, params) that re-create ``run_id`` exactly, data set version pinned."""
    from experiments.tracking import client_for

    try:
        run = client_for(services.settings).get_run(run_id)
    except MlflowException:
        raise NotFound(f"no MLflow run {run_id!r}; copy the id from `wb jobs show` or the "
                       "MLflow UI", run_id=run_id) from None
    tags = run.data.tags
    if "wb.experiment" not in tags or "wb.config" not in tags:
        raise Unprocessable(f"run {run_id} was not made by ml-workbench (no wb.config tag); "
                            "only those can be reproduced", run_id=run_id)
    params = json.loads(tags["wb.config"])
    ref = tags.get("wb.dataset_ref", "")
    if ref and not ref.startswith("builtin:"):
        params["dataset"] = ref
    return tags["wb.experiment"], params


def compare(services: Services, original: str, again: str) -> list[dict[str, Any]]:
    """Metric by metric: the original run, the reproduction, equal or not (to 1e-9)."""
    from experiments.tracking import client_for

    client = client_for(services.settings)
    a = client.get_run(original).data.metrics
    b = client.get_run(again).data.metrics
    skip = {"duration_s"}
    rows = []
    for key in sorted(set(a) | set(b)):
        if key in skip or key.startswith(("epoch_seconds",)):
            continue
        va, vb = a.get(key), b.get(key)
        same = va is not None and vb is not None and abs(va - vb) <= 1e-9 * max(1, abs(va))
        rows.append({"metric": key, "original": va, "reproduced": vb, "same": same})
    return rows
