"""Experiment registry: typed frozen configs, clear refusals naming the field, sweep plans."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from experiments.registry import all_experiments, describe, get, validate
from jobs.sweeps import plan
from mlwb.errors import NotFound, Unprocessable

BUILT_IN = {"digits_mlp", "digits_cnn", "breast_cancer_mlp", "breast_cancer_logreg",
            "breast_cancer_rf", "breast_cancer_gb", "wine_logreg", "wine_rf", "wine_gb",
            "diabetes_ridge"}


def test_built_ins_are_registered_with_typed_ranged_params() -> None:
    assert {e.name for e in all_experiments()} >= BUILT_IN
    params = {p["name"]: p for p in describe("digits_mlp")}
    assert params["lr"]["type"] == "float" and params["lr"]["log"]
    assert params["epochs"]["min"] == 1 and params["epochs"]["max"] == 1000
    assert params["hidden"]["default"] == 64
    assert get("diabetes_ridge").task == "regression"
    assert get("digits_cnn").uses_gpu and not get("wine_rf").uses_gpu


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"lr": -1}, "lr", "greater than 0"),
    ({"epochs": "many"}, "epochs", "integer"),
    ({"epochs": 0}, "epochs", "greater than or equal to 1"),
    ({"learning_rate": 0.1}, "learning_rate", "is not a parameter"),
    ({"device": "tpu"}, "device", "pattern"),
])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str, words: str) -> None:
    with pytest.raises(Unprocessable) as err:
        validate("digits_mlp", params)
    assert err.value.context["field"] == field
    assert field in err.value.message and words in err.value.message


def test_configs_are_frozen_and_text_values_coerce() -> None:
    cfg = validate("digits_mlp", {"lr": "0.01", "epochs": "7", "amp": "false"})
    assert cfg.lr == 0.01 and cfg.epochs == 7 and cfg.amp is False  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        cfg.lr = 1.0  # type: ignore[misc]
    with pytest.raises(NotFound, match="known: "):
        validate("nope", {})


def test_sweep_plans_grid_and_random_within_ranges() -> None:
    grid = plan("digits_mlp", {"lr": [0.001, 0.01], "hidden": [16, 32]}, 0, {"epochs": 2})
    assert len(grid) == 4 and all(t["epochs"] == 2 for t in grid)
    rand = plan("digits_mlp", {"hidden": [16, 32]}, 20, {}, None, seed=1)
    assert len(rand) == 20 and {t["hidden"] for t in rand} <= {16, 32}
    lrs = [t["lr"] for t in rand]
    assert all(0 < v <= 1.0 for v in lrs)
    # log-uniform over (0, 1]: spans orders of magnitude
    assert max(lrs) / min(lrs) > 10
    ranged = plan("digits_mlp", None, 10, {}, {"hidden": (8, 12)}, seed=2)
    assert all(8 <= t["hidden"] <= 12 and isinstance(t["hidden"], int) for t in ranged)
    assert plan("digits_mlp", None, 5, {}, None, seed=3) == plan("digits_mlp", None, 5, {},
                                                                  None, seed=3)
    with pytest.raises(Unprocessable, match="--grid"):
        plan("digits_mlp", {}, 0, {})
    with pytest.raises(Unprocessable, match="not a parameter"):
        plan("digits_mlp", None, 3, {}, {"nope": (1, 2)})
    assert not math.isnan(lrs[0])
