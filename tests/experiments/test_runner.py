"""One experiment = one MLflow run: params, per-epoch metrics, artifacts, a registered
version that loads through pyfunc, its hash in our own store, and exact CPU reproduction."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from experiments.config import ExperimentConfig
from experiments.data import load_builtin
from experiments.registry import Experiment, register
from experiments.runner import RunOptions, run_experiment
from experiments.tracking import client_for, tracking
from jobs.runs import compare, run_recipe
from mlwb.registry import artifact_digest, expected_hash
from mlwb.services import Services


def load(services: Services, uri: str) -> mlflow.pyfunc.PyFuncModel:
    with tracking(services.settings):
        return mlflow.pyfunc.load_model(uri)


def test_sklearn_run_registers_a_pipeline_with_reference_and_hash(services: Services) -> None:
    result = run_experiment(services, "breast_cancer_logreg", {"C": 0.5})
    client = client_for(services.settings)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["C"] == "0.5"
    tags = run.data.tags
    assert tags["wb.dataset"] == "builtin:breast_cancer" and tags["wb.split_seed"] == "0"
    assert tags["wb.code_version"] and tags["wb.registered"] == "breast_cancer_logreg/1"
    assert run.data.metrics["test_accuracy"] > 0.9 and "duration_s" in run.data.metrics
    model = load(services, "models:/breast_cancer_logreg/1")
    frame = load_builtin("breast_cancer")
    pred = model.predict(frame.drop(columns=["target"]).head(50))
    assert (np.asarray(pred) == frame["target"].head(50).to_numpy()).mean() > 0.9
    assert [c.name for c in model.metadata.get_input_schema().inputs][:2] == [
        "mean_radius", "mean_texture"]
    with tempfile.TemporaryDirectory() as tmp, tracking(services.settings):
        local = mlflow.artifacts.download_artifacts("models:/breast_cancer_logreg/1",
                                                    dst_path=tmp)
        assert expected_hash(services.engine, "breast_cancer_logreg", 1) == artifact_digest(
            Path(local))
        ref = pd.read_parquet(mlflow.artifacts.download_artifacts(
            f"runs:/{result.run_id}/reference/reference.parquet", dst_path=tmp))
    assert len(ref) == result.metrics["train_rows"] and "target" in ref.columns


def test_torch_run_is_a_pyfunc_with_module_and_reproduces_exactly(services: Services) -> None:
    # device=cuda on a CPU-only box falls back to CPU (and says so in the run's tags).
    params = {"epochs": 3, "batch_size": 128, "device": "cuda", "seed": 5, "model_name": "cnn"}
    first = run_experiment(services, "digits_cnn", params)
    client = client_for(services.settings)
    run = client.get_run(first.run_id)
    assert run.data.tags["wb.train.requested_device"] == "cuda"
    hist = client.get_metric_history(first.run_id, "val_loss")
    assert [m.step for m in hist] == [1, 2, 3]
    model = load(services, "models:/cnn/1")
    inner = model.unwrap_python_model()
    frame = load_builtin("digits").drop(columns=["target"]).head(4)
    assert inner.feature_names == list(frame.columns)
    assert inner.classes_ == list(range(10))
    assert inner.predict_proba(frame).shape == (4, 10)
    assert hasattr(inner.module, "norm")
    assert list(model.predict(frame)) == list(np.asarray(inner.classes_)[
        inner.predict_proba(frame).argmax(1)])
    if run.data.tags["wb.device"] == "cpu":
        experiment, recipe = run_recipe(services, first.run_id)
        again = run_experiment(services, experiment, recipe, RunOptions(
            tags={"wb.reproduces": first.run_id}))
        rows = compare(services, first.run_id, again.run_id)
        assert rows and all(r["same"] for r in rows), rows


class BoomConfig(ExperimentConfig):
    """Test-only config."""


def _boom(cfg: BoomConfig, split: object, ctx: object) -> None:
    raise RuntimeError("the GPU caught fire")


register(Experiment("test_boom", BoomConfig, _boom, "classification", "wine", "sklearn"))


def test_a_failing_fit_ends_its_run_failed_with_the_reason(services: Services) -> None:
    started: list[str] = []
    with pytest.raises(RuntimeError, match="caught fire"):
        run_experiment(services, "test_boom", {}, RunOptions(on_run_started=started.append))
    run = client_for(services.settings).get_run(started[0])
    assert run.info.status == "FAILED"
    assert run.data.tags["wb.end_reason"] == "RuntimeError: the GPU caught fire"
