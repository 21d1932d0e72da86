"""One registered model version, loaded for serving: verified, on the right device, fast.

``LoadedModel.load`` downloads the version's artifacts, refuses them unless their SHA-256
matches the hash recorded at registration (``mlwb.registry``), loads them with
``mlflow.pyfunc`` and picks a fast path that gives the same predictions as
``pyfunc.predict``:

- an sklearn Pipeline of StandardScaler and a linear model: compiled to two numpy
  operations on the validated matrix (``api.serving.linear``);
- any other sklearn estimator or Pipeline: ``predict``/``predict_proba`` called directly
  on the validated DataFrame (no pyfunc schema enforcement a second time);
- a python model exposing ``predict_proba`` and ``classes_`` (the torch classifiers of
  ``experiments/``, already on CUDA when present): run under ``inference_mode``, an MLP
  as its flat list of kernel calls (``api.serving.torch_kernel``);
- anything else: ``pyfunc.predict``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import Engine

from api.serving.batcher import MAX_BATCH, Batcher
from api.serving.linear import LinearKernel, compile_linear
from api.serving.output import Output
from api.serving.schema import InputSchema, Parsed
from api.serving.torch_kernel import compile_module, near_tie, numpy_forward
from mlwb.errors import StoreError, Unprocessable, reason_of
from mlwb.registry import fetch_verified

log = logging.getLogger(__name__)


class LoadedModel:
    """A verified model version held in memory by one API process."""

    def __init__(self, name: str, version: str, run_id: str, pyfunc: Any,
                 max_batch: int = MAX_BATCH) -> None:
        self.name = name
        self.version = version
        self.run_id = run_id
        self.pyfunc = pyfunc
        self.schema = InputSchema.from_mlflow(pyfunc.metadata.get_input_schema())
        self.classes: list[Any] | None = None
        self.kind = "pyfunc"
        self.device = "cpu"
        self._raw: Any = None
        self._linear: LinearKernel | None = None
        self._columns: list[int] | None = None
        self._in_order = False  # the module's features are the signature's columns, in order
        self._feature_names: list[str] = []
        self._class_array: np.ndarray | None = None  # classes, to index by argmax
        self._class_keys: list[str] = []  # classes as the probabilities' keys
        self._forward: Any = None  # the torch fast path's forward (see _select_fast_path)
        self._numpy: Any = None  # the same forward in numpy, on the CPU (see _torch)
        self.max_batch = max_batch
        self.batcher: Batcher | None = None
        self._lock = threading.Lock()  # a torch module is not re-entrant on one stream
        self._select_fast_path()

    @classmethod
    def load(cls, client: mlflow.MlflowClient, engine: Engine, name: str, version: str,
             dest: Path, max_batch: int = MAX_BATCH) -> LoadedModel:
        """Download, verify and load ``name`` version ``version``."""
        local, run_id = fetch_verified(client, engine, name, version, dest)
        try:
            pyfunc = mlflow.pyfunc.load_model(str(local))
        except Exception as exc:
            raise StoreError(f"model {name!r} version {version} could not be loaded: {exc}",
                             model=name, version=version) from exc
        return cls(name, version, run_id, pyfunc, max_batch)

    def _select_fast_path(self) -> None:
        flavors = self.pyfunc.metadata.flavors
        if "sklearn" in flavors:
            self._raw = self.pyfunc.get_raw_model()
            self.kind = "sklearn"
            if hasattr(self._raw, "predict_proba") and hasattr(self._raw, "classes_"):
                self._set_classes(self._raw.classes_)
            if self.schema is not None and self.schema.all_double:
                self._linear = compile_linear(self._raw, self.schema.names)
                if self._linear is not None:
                    self.kind = "sklearn-linear"
            return
        try:
            python_model = self.pyfunc.unwrap_python_model()
        except Exception:  # not a python_function model: keep pyfunc.predict
            return
        classes = getattr(python_model, "classes_", None)
        if hasattr(python_model, "predict_proba") and classes is not None:
            self._raw = python_model
            self.kind = "torch" if hasattr(python_model, "module") else "python"
            self._set_classes(classes)
            # experiments.pyfunc puts its module on CUDA when present at load_context
            self.device = str(getattr(python_model, "device", "cpu"))
            names = list(getattr(python_model, "feature_names", []) or [])
            if self.kind == "torch" and self.schema is not None and set(names) <= set(
                    self.schema.names) and names:
                # Feature columns as positions in the validated matrix (signature order).
                self._columns = [self.schema.names.index(n) for n in names]
                self._in_order = self._columns == list(range(len(self.schema.names)))
                self._feature_names = names
                # The module's own kernel calls without its nn.Module dispatch (same bits).
                self._forward = compile_module(python_model.module) or python_model.module
                self.batcher = Batcher(self._logits, self.max_batch)
                if self.device == "cpu":
                    self._numpy = numpy_forward(python_model.module)
            if self.kind == "torch" and self.device == "cpu":
                import torch

                # Request threads are the parallelism of an API process; intra-op threads on
                # top of them only contend for the same cores on row-sized inputs.
                torch.set_num_threads(1)

    def _set_classes(self, classes: Any) -> None:
        self.classes = list(np.asarray(classes).tolist())
        self._class_array = np.asarray(self.classes)
        self._class_keys = [str(c) for c in self.classes]

    def predict(self, parsed: Parsed, params: dict[str, Any] | None = None) -> Output:
        """Predictions (and class probabilities) for a validated request.

        ``params`` (MLflow inference params) reach models that take them (the generic pyfunc
        path); sklearn and the torch fast path take none, as under ``mlflow models serve``.
        A model that refuses rows which passed validation (sklearn's "Input X contains
        infinity" after a scaler overflows, MLflow's params or type enforcement) is a 422
        with the model's reason, where MLflow's server answers 400; never a 500.
        """
        try:
            # numpy's overflow warnings would only fill the log (the outcome is checked).
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return self._predict(parsed, params)
        except (ValueError, OverflowError, TypeError, MlflowException) as exc:
            raise Unprocessable(f"model {self.name!r} version {self.version} could not score "
                                f"these rows: {reason_of(exc)}", model=self.name) from None

    def _predict(self, parsed: Parsed, params: dict[str, Any] | None) -> Output:
        if self._linear is not None:
            x = parsed.matrix if parsed.matrix is not None else parsed.frame[
                self._linear.names].to_numpy(np.float64)
            return self._linear.predict(x)
        if self.kind == "sklearn":
            return self._sklearn(parsed.frame)
        if self.kind == "torch" and self._columns is not None:
            return self._torch(parsed)
        if self.kind in ("torch", "python"):
            import torch

            with self._lock, torch.inference_mode():
                proba = np.asarray(self._raw.predict_proba(parsed.frame))
            return self._from_proba(proba)
        return Output(_to_list(self.pyfunc_predict(parsed.frame, params)))

    def _logits(self, x: np.ndarray) -> np.ndarray:
        """One forward pass of the module on float32 rows (called by the batcher)."""
        import torch

        with torch.inference_mode():  # an eval-mode module is safe to share between threads
            t = torch.from_numpy(x)
            out = self._forward(t if self.device == "cpu" else t.to(self._raw.device))
        if out.dtype != torch.float32:
            out = out.float()
        return (out if out.device.type == "cpu" else out.cpu()).numpy()  # type: ignore[no-any-return]

    def _torch(self, parsed: Parsed) -> Output:
        """experiments.pyfunc's forward pass without its DataFrame round trip: the same
        float32 input, module and softmax, so the same answers as ``pyfunc.predict``;
        concurrent requests share forward passes (``api.serving.batcher``)."""
        if parsed.matrix is not None:
            x = parsed.matrix if self._in_order else parsed.matrix[:, self._columns]
        else:
            x = parsed.frame[self._feature_names].to_numpy(dtype=np.float64)
        assert self.batcher is not None and self._class_array is not None
        x = x.astype(np.float32)
        if self._numpy is not None and len(x) <= self.max_batch:
            # Row-sized requests on the CPU: numpy, in this thread (batching saves nothing
            # without torch's per-operator cost); torch where two outputs nearly tie, so a
            # label is always the one pyfunc gives.
            logits = self._numpy(x)
            if near_tie(logits):
                logits = self.batcher(x)
        else:
            logits = self.batcher(x)
        # pyfunc's softmax, with the ufuncs' reductions called directly: ndarray.max and
        # .sum are these same reductions behind a Python wrapper (the same bits).
        e = np.exp(logits - np.maximum.reduce(logits, axis=1, keepdims=True))
        proba = e / np.add.reduce(e, axis=1, keepdims=True)
        preds = self._class_array[logits.argmax(axis=1)].tolist()
        return Output(preds, _proba_dicts(proba, self._class_keys))

    def _sklearn(self, frame: pd.DataFrame) -> Output:
        model = self._raw
        if self.classes is None:
            return Output(_to_list(model.predict(frame)))
        proba = np.asarray(model.predict_proba(frame))
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        if type(final).__name__ == "LogisticRegression":
            # argmax of predict_proba is exactly LogisticRegression.predict: one pass, not two
            return self._from_proba(proba)
        return Output(_to_list(model.predict(frame)), _proba_dicts(proba, self._class_keys))

    def _from_proba(self, proba: np.ndarray) -> Output:
        assert self._class_array is not None
        preds = self._class_array[np.argmax(proba, axis=1)].tolist()
        return Output(preds, _proba_dicts(proba, self._class_keys))

    def pyfunc_predict(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Exactly what ``mlflow.pyfunc`` answers (used where a model has no fast path)."""
        return self.pyfunc.predict(frame, params=params) if params else self.pyfunc.predict(
            frame)

    def describe(self) -> dict[str, Any]:
        """Metadata for the API."""
        return {"name": self.name, "version": self.version, "run_id": self.run_id,
                "kind": self.kind, "device": self.device, "classes": self.classes,
                "inputs": self.schema.describe() if self.schema else None}


def _proba_dicts(proba: np.ndarray, keys: list[str]) -> list[dict[str, float]]:
    return [dict(zip(keys, row, strict=True)) for row in proba.tolist()]


def _to_list(raw: Any) -> list[Any]:
    if isinstance(raw, pd.DataFrame):
        return raw.to_dict("records")  # type: ignore[return-value]
    if isinstance(raw, pd.Series | np.ndarray):
        return raw.tolist()  # type: ignore[no-any-return]
    return list(raw)
