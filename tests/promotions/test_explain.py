"""Explain: Shapley attributions against the closed form of a linear model, additivity for a
classifier, the input-example fallback, and clear errors; through the real API."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from flask.testing import FlaskClient

from mlwb import promotions as pr
from mlwb.errors import InputError, NotFound, PermissionDenied, Unprocessable
from mlwb.explain import explain
from mlwb.roles import Scope
from mlwb.services import Services
from mlwb.users import Principal
from tests.promotions.models import LINEAR_FEATURES, LINEAR_WEIGHTS, Store, register

ROWS = [{"a": 1.0, "b": -0.5, "c": 2.0, "d": 0.25}, {"a": -1.0, "b": 0.0, "c": 0.5, "d": 3.0}]


def closed_form(row: dict[str, float], mean: np.ndarray) -> np.ndarray:
    x = np.array([row[f] for f in LINEAR_FEATURES])
    return LINEAR_WEIGHTS * (x - mean)


def test_linear_model_matches_the_closed_form_over_http(
        client: FlaskClient, bearer: Callable[..., dict[str, str]], services: Services,
        people: dict[str, Principal], store: Store, model: str) -> None:
    pr.approve(services, people["ann"], pr.propose(services, people["sam"], model, 2).id)
    resp = client.post(f"/api/models/{model}/explain", headers=bearer("vic", Scope.predict),
                       json={"instances": ROWS})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["version"], body["alias"], body["background_source"]) == (
        "2", "champion", "reference")
    mean = store.linear.reference[LINEAR_FEATURES].mean().to_numpy()
    for row, ex in zip(ROWS, body["explanations"], strict=True):
        got = np.array([ex["attributions"][f] for f in LINEAR_FEATURES])
        np.testing.assert_allclose(got, closed_form(row, mean), atol=1e-9)
        assert ex["method"] == "exact" and ex["output"] == "prediction"
        x = np.array([row[f] for f in LINEAR_FEATURES])
        assert ex["output_value"] == pytest.approx(x @ LINEAR_WEIGHTS + 0.25)
        assert ex["base_value"] == pytest.approx(mean @ LINEAR_WEIGHTS + 0.25)
        assert sum(got) == pytest.approx(ex["output_value"] - ex["base_value"])
    # A version of one's choosing is for scientists, as on /predict.
    refused = client.post(f"/api/models/{model}/explain", headers=bearer("vic", Scope.predict),
                          json={"instances": ROWS, "version": "1"})
    assert refused.status_code == 403
    assert "specific model version" in refused.get_json()["message"]


def test_classifier_attributions_sum_to_the_predicted_class_probability(
        services: Services, people: dict[str, Principal], store: Store) -> None:
    name = register(services, store, versions=1, kind="classifier")
    frame = store.classifier.reference
    rows = frame.iloc[[0, 150]].to_dict("records")
    out = explain(services, people["sam"], name, rows, version=1)
    assert out["background_rows"] == 100 and out["alias"] is None
    proba = store_model_proba(services, name, frame.iloc[[0, 150]])
    for i, ex in enumerate(out["explanations"]):
        assert ex["method"].startswith("permutation(")
        assert ex["predicted"] in (0, 1)
        assert ex["output"] == f"probability of class {ex['predicted']}"
        assert ex["output_value"] == pytest.approx(proba[i, ex["predicted"]])
        total = sum(ex["attributions"].values())
        assert total == pytest.approx(ex["output_value"] - ex["base_value"], abs=1e-9)
        assert len(ex["attributions"]) == 30


def store_model_proba(services: Services, name: str, frame) -> np.ndarray:  # type: ignore[no-untyped-def]
    from mlwb.explain import explainer

    ex = explainer(services, name, "1")
    assert ex.proba is not None
    return ex.proba(frame[ex.features])


def test_input_example_is_the_fallback_background(
        services: Services, people: dict[str, Principal], store: Store) -> None:
    name = register(services, store, versions=1, kind="linear_bare")
    out = explain(services, people["sam"], name, ROWS[:1], version="1")
    assert out["background_source"] == "input_example" and out["background_rows"] == 3
    mean = store.linear_bare.reference[LINEAR_FEATURES].head(3).mean().to_numpy()
    got = np.array([out["explanations"][0]["attributions"][f] for f in LINEAR_FEATURES])
    np.testing.assert_allclose(got, closed_form(ROWS[0], mean), atol=1e-9)


def test_bad_requests_name_the_problem(services: Services, people: dict[str, Principal],
                                       model: str) -> None:
    vic, sam = people["vic"], people["sam"]
    with pytest.raises(NotFound, match="no champion"):
        explain(services, vic, model, ROWS)
    with pytest.raises(PermissionDenied, match="specific model version"):
        explain(services, vic, model, ROWS, version=1)
    with pytest.raises(NotFound, match="no version '8'"):
        explain(services, sam, model, ROWS, version=8)
    cases = [
        ([{"a": 1, "b": 2, "c": 3}], Unprocessable, "missing feature"),
        ([{**ROWS[0], "e": 1}], InputError, "unknown feature"),
        ([{**ROWS[0], "b": "high"}], Unprocessable, r"instances\[0\].b"),
        ([{**ROWS[0], "b": None}], Unprocessable, "finite number"),
        (ROWS * 11, InputError, "at most 20"),
        ([], InputError, "instances"),
        ("a,b", InputError, "instances"),
    ]
    for rows, error, words in cases:
        with pytest.raises(error, match=words):
            explain(services, sam, model, rows, version=1)


def test_explains_a_torch_model_trained_by_the_experiments(
        services: Services, people: dict[str, Principal]) -> None:
    from experiments.runner import run_experiment

    result = run_experiment(services, "breast_cancer_mlp",
                            {"epochs": 2, "hidden": 8, "layers": 1, "model_name": "bc-mlp"})
    assert result.version is not None
    pr.approve(services, people["ann"], pr.propose(
        services, people["sam"], "bc-mlp", result.version).id)
    from mlwb.explain import explainer

    ex = explainer(services, "bc-mlp", result.version)
    assert ex.background_source == "reference" and ex.proba is not None
    row = ex.background.iloc[[3]]
    out = explain(services, people["vic"], "bc-mlp", row.to_dict("records"))
    (item,) = out["explanations"]
    assert item["output_value"] == pytest.approx(ex.proba(row)[0].max(), abs=1e-6)
    assert sum(item["attributions"].values()) == pytest.approx(
        item["output_value"] - item["base_value"], abs=1e-6)
