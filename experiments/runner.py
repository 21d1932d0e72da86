"""Run one experiment as exactly one MLflow run: validate, load data, fit, log, register.

The run never stays RUNNING because of this code: any exception (a job timeout included)
ends it FAILED with the reason in the ``wb.end_reason`` tag before it propagates. Processes
killed outright are the jobs layer's business (``jobs.lifecycle``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from experiments import registry, tracking
from experiments.data import Split, load_frame, make_split
from experiments.registry import FitContext, Fitted
from mlwb.datasets import DatasetStore
from mlwb.services import Services


@dataclass
class RunOptions:
    """How to run: lineage tags, hooks, whether to register."""

    job_id: str | None = None
    parent_run_id: str | None = None
    attempt: int = 1
    tags: dict[str, str] = field(default_factory=dict)
    register: bool = True
    on_run_started: Callable[[str], None] | None = None
    on_epoch: Callable[[dict[str, float]], None] | None = None


@dataclass
class RunResult:
    """The outcome of a finished run."""

    run_id: str
    experiment: str
    metrics: dict[str, float]
    model_name: str | None = None
    version: str | None = None
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the job's return value)."""
        return dict(self.__dict__)


def evaluate(fitted: Fitted, split: Split) -> tuple[dict[str, float], np.ndarray]:
    """Test-split metrics and predictions."""
    from experiments.torch_train import predict

    if fitted.kind == "sklearn":
        pred = np.asarray(fitted.model.predict(split.X_test))
    else:
        device = next(fitted.model.parameters()).device
        out = predict(fitted.model, split.X_test.to_numpy(dtype=np.float32), device)
        pred = (np.asarray(split.classes)[out.argmax(1)] if split.task == "classification"
                else out[:, 0])
    y = split.y_test.to_numpy()
    if split.task == "classification":
        return {"test_accuracy": float(skm.accuracy_score(y, pred)),
                "test_f1_macro": float(skm.f1_score(y, pred, average="macro"))}, pred
    return {"test_rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
            "test_mae": float(skm.mean_absolute_error(y, pred)),
            "test_r2": float(skm.r2_score(y, pred))}, pred


def _artifacts(folder: Path, fitted: Fitted, split: Split, pred: np.ndarray) -> None:
    """Reference data, confusion matrix and loss curve (JSON and PNG) into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = folder / "reference"
    ref.mkdir()
    split.reference().to_parquet(ref / "reference.parquet", index=False)
    plots = folder / "plots"
    plots.mkdir()
    if split.task == "classification":
        labels = split.classes or []
        cm = skm.confusion_matrix(split.y_test.to_numpy(), pred, labels=labels)
        (plots / "confusion_matrix.json").write_text(json.dumps(
            {"labels": [str(c) for c in labels], "matrix": cm.tolist()}))
        fig, ax = plt.subplots(figsize=(4, 4))
        skm.ConfusionMatrixDisplay(cm, display_labels=labels).plot(ax=ax, colorbar=False)
        fig.savefig(plots / "confusion_matrix.png", dpi=80, bbox_inches="tight")
        plt.close(fig)
    if fitted.history:
        (plots / "history.json").write_text(json.dumps(fitted.history))
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot([h["epoch"] for h in fitted.history], [h["train_loss"] for h in fitted.history],
                label="train")
        ax.plot([h["epoch"] for h in fitted.history], [h["val_loss"] for h in fitted.history],
                label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        fig.savefig(plots / "loss_curve.png", dpi=80, bbox_inches="tight")
        plt.close(fig)


def run_experiment(services: Services, name: str, params: dict[str, Any],
                   options: RunOptions | None = None) -> RunResult:
    """Train experiment ``name`` with ``params`` as one MLflow run; register the model."""
    from mlflow.entities import Metric, Param

    options = options or RunOptions()
    exp = registry.get(name)
    cfg = registry.validate(name, params)
    settings = services.settings
    store = DatasetStore(settings, services.engine, services.sink)
    frame, target, ds_name, ds_version = load_frame(cfg.dataset, exp.data, store)
    split = make_split(frame, target, exp.task, cfg.test_size, cfg.seed, ds_name, ds_version)
    client = tracking.client_for(settings)
    model_name = cfg.model_name or exp.name
    config_json = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    tags = {
        "wb.experiment": exp.name, "wb.framework": exp.framework, "wb.task": exp.task,
        "wb.dataset": ds_name, "wb.dataset_version": ds_version,
        "wb.dataset_ref": f"{ds_name}@{ds_version}", "wb.split_seed": str(cfg.seed),
        "wb.test_size": str(cfg.test_size), "wb.config": config_json,
        "wb.code_version": tracking.code_version(), "wb.attempt": str(options.attempt),
        **options.tags,
    }
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:  # the GPU a worker is bound to
        tags["wb.cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    if options.job_id:
        tags["wb.job_id"] = options.job_id
    if options.parent_run_id:
        tags["mlflow.parentRunId"] = options.parent_run_id
    exp_id = tracking.experiment_id(client, settings, exp.name)
    run = client.create_run(exp_id, tags=tags, run_name=f"{exp.name}-{options.attempt}"
                            if options.job_id else None)
    run_id = run.info.run_id
    started = time.perf_counter()
    try:
        if options.on_run_started:
            options.on_run_started(run_id)
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in
                                          cfg.model_dump(mode="json").items()])

        def on_epoch(m: dict[str, float]) -> None:
            step = int(m["epoch"])
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(k, float(v), now, step)
                                              for k, v in m.items() if k != "epoch"])
            if options.on_epoch:
                options.on_epoch(m)

        fitted = exp.fit(cfg, split, FitContext(on_epoch=on_epoch))
        scores, pred = evaluate(fitted, split)
        duration = time.perf_counter() - started
        final = {**scores, "duration_s": duration, "train_rows": float(len(split.X_train))}
        if fitted.history:
            final["epochs_run"] = float(len(fitted.history))
        client.log_batch(run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0)
                                          for k, v in final.items()])
        client.set_tag(run_id, "wb.device", fitted.tags.get("device", "cpu"))
        for k, v in fitted.tags.items():
            client.set_tag(run_id, f"wb.train.{k}", v)
        with tempfile.TemporaryDirectory() as tmp:
            _artifacts(Path(tmp), fitted, split, pred)
            client.log_artifacts(run_id, tmp)
        meta = {"feature_names": split.feature_names, "classes": split.classes,
                "task": exp.task, "target": split.target}
        version = None
        with tracking.tracking(settings):
            model_uri = tracking.log_model(fitted, run_id, split.X_train.head(20), meta)
            if options.register:
                version = tracking.register(services.engine, model_uri, model_name, run_id)
                client.set_tag(run_id, "wb.registered", f"{model_name}/{version}")
        client.set_terminated(run_id, "FINISHED")
        return RunResult(run_id, exp.name, final, model_name if version else None, version,
                         fitted.tags.get("device", "cpu"))
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        # If the store itself failed, the maintainer's reconcile pass ends the run later.
        with contextlib.suppress(Exception):
            tracking.end_run(client, run_id, "FAILED", reason)
        raise


def metrics_history(services: Services, run_id: str, key: str) -> pd.DataFrame:
    """Every logged value of metric ``key`` for a run, by step."""
    hist = tracking.client_for(services.settings).get_metric_history(run_id, key)
    return pd.DataFrame([{"step": m.step, "value": m.value} for m in hist])
