"""What a model path answers: per-row predictions and, for classifiers, probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Output:
    """Per-row predictions and, for classifiers, class probabilities."""

    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = None
