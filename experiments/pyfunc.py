"""The MLflow pyfunc wrapper for torch models: safetensors weights + JSON config, no pickle.

Serving loads it with ``mlflow.pyfunc.load_model(uri)`` and reaches this object through
``unwrap_python_model()``: ``.module`` (carrying its normalisation), ``.feature_names``,
``.classes_`` (None for regression) and ``predict_proba``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from experiments.torch_models import load_bundle


def pick_device(requested: str = "auto") -> torch.device:
    """``cuda`` (or the named device) when present, else CPU."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda" if requested == "auto" else requested)
    return torch.device("cpu")


class TorchTabularModel(PythonModel):
    """A torch module behind pyfunc's DataFrame-in, predictions-out interface."""

    module: torch.nn.Module
    feature_names: list[str]
    classes_: list[Any] | None
    device: torch.device

    def load_context(self, context: Any) -> None:
        """Rebuild the module from the run's artifacts on cuda when present, else CPU."""
        self.device = pick_device()
        module, meta = load_bundle(context.artifacts["weights"], context.artifacts["config"],
                                   self.device)
        self.module = module
        self.feature_names = list(meta["feature_names"])
        self.classes_ = meta.get("classes")

    def _forward(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.feature_names if c not in frame.columns]
        if missing:
            raise ValueError(f"input lacks feature column(s): {', '.join(missing[:10])}")
        x = torch.as_tensor(frame[self.feature_names].to_numpy(dtype=np.float32),
                            device=self.device)
        with torch.no_grad():
            out = self.module(x).float()
        return out.cpu().numpy()

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_``."""
        if self.classes_ is None:
            raise ValueError("predict_proba is only defined for classifiers")
        logits = self._forward(frame)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> np.ndarray:
        """Class labels (classifiers) or values (regression) for each row."""
        out = self._forward(pd.DataFrame(model_input))
        if self.classes_ is None:
            return out[:, 0]
        return np.asarray(self.classes_)[out.argmax(axis=1)]
