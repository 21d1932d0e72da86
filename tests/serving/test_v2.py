"""Open Inference Protocol v2: metadata, readiness, JSON and binary tensors."""

from __future__ import annotations

import itertools
import json
import struct
from typing import Any

import numpy as np
import pytest
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

from tests.serving.conftest import World

_words = itertools.count(1)


def test_health_server_and_model_metadata(world: World) -> None:
    name = world.model("lr")
    c, h = world.client, world.headers
    assert c.get("/v2/health/live").get_json() == {"live": True}
    assert c.get("/v2/health/ready").status_code == 200
    assert c.get("/v2").status_code == 401
    assert "binary_tensor_data" in c.get("/v2", headers=h).get_json()["extensions"]
    meta = c.get(f"/v2/models/{name}", headers=h).get_json()
    assert meta["versions"] == ["1"] and len(meta["inputs"]) == 30
    assert meta["inputs"][0] == {"name": "mean_radius", "datatype": "FP64", "shape": [-1]}
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert c.get(f"/v2/models/{name}/versions/1/ready", headers=h).get_json()["ready"] is True
    missing = c.get("/v2/models/nope", headers=h)
    assert missing.status_code == 404 and set(missing.get_json()) == {"error"}


def test_infer_json_and_binary_equal_predict(world: World, predict) -> None:
    name = world.model("lr")
    X = world.zoo.X.iloc[:6]
    ref = predict(name, {"instances": X.to_dict("records")}).get_json()["predictions"]
    labels = [p["prediction"] for p in ref]
    url = f"/v2/models/{name}/infer"
    matrix = {"inputs": [{"name": "x", "shape": [6, 30], "datatype": "FP64",
                          "data": X.to_numpy().ravel().tolist()}], "id": "r1"}
    out = world.client.post(url, json=matrix, headers=world.headers).get_json()
    assert out["id"] == "r1" and out["model_version"] == "1"
    assert out["outputs"][0]["data"] == labels and out["outputs"][0]["shape"] == [6]
    assert len(out["parameters"]["prediction_ids"]) == 6
    proba = np.array(out["outputs"][1]["data"]).reshape(6, 2)
    np.testing.assert_allclose(proba[:, 1], [p["probabilities"]["1"] for p in ref])
    per_column = {"inputs": [{"name": c, "shape": [6], "datatype": "FP64",
                              "data": X[c].tolist()} for c in X.columns]}
    out = world.client.post(url, json=per_column, headers=world.headers).get_json()
    assert out["outputs"][0]["data"] == labels
    # Binary tensor extension, both ways.
    blob = X.to_numpy(dtype="<f8").tobytes()
    head = json.dumps({"inputs": [{"name": "x", "shape": [6, 30], "datatype": "FP64",
                                   "parameters": {"binary_data_size": len(blob)}}],
                       "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]
                       }).encode()
    resp = world.client.post(url, data=head + blob, content_type="application/octet-stream",
                             headers={**world.headers,
                                      "Inference-Header-Content-Length": str(len(head))})
    assert resp.status_code == 200, resp.get_data()[:300]
    n = int(resp.headers["Inference-Header-Content-Length"])
    meta = json.loads(resp.get_data()[:n])
    (tensor,) = meta["outputs"]
    assert tensor["name"] == "predict" and tensor["parameters"]["binary_data_size"] == 48
    assert np.frombuffer(resp.get_data()[n:], dtype="<i8").tolist() == labels
    world.land()
    assert world.services.lake.count("predictions") == 6 * 4


def test_v2_mistakes_are_4xx_with_error_shape(world: World) -> None:
    name = world.model("lr")
    url = f"/v2/models/{name}/infer"
    bad = [
        {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
        {"inputs": [{"name": "x", "shape": [2, 30], "datatype": "FP64", "data": [1.0]}]},
        {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "COMPLEX", "data": [1.0]}]},
        {"inputs": []},
        {"inputs": [{"name": "mean_radius", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
    ]
    for body in bad:
        resp = world.client.post(url, json=body, headers=world.headers)
        assert 400 <= resp.status_code < 500 and set(resp.get_json()) == {"error"}, body


# -- helpers for the regression tests below -------------------------------------------------
class _Words(PythonModel):
    """Answers text ("no", "yes", ...) and has no classes: a generic pyfunc."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return ["yes" if i % 2 else "no" for i in range(len(model_input))]


def _words_model(world: World) -> str:
    """A registered, verified champion: ``_Words`` behind one string column ``s``."""
    name = world.zoo.register_python(world.services, f"words-{next(_words)}", _Words(),
                                     ModelSignature(Schema([ColSpec("string", "s")])))
    world.promote(name, 1)
    return name


def _matrix(world: World, n: int = 1) -> dict[str, Any]:
    """One [n, 30] FP64 input of real rows."""
    return {"name": "x", "shape": [n, 30], "datatype": "FP64",
            "data": world.zoo.X.iloc[:n].to_numpy().ravel().tolist()}


def _logged(world: World, name: str) -> int:
    world.land()
    return int(world.services.lake.df(
        "SELECT count(*) AS n FROM predictions WHERE model = ?", [name])["n"][0])


def _hits(world: World) -> int:
    """Prediction requests counted against the rate limit (all windows, all callers)."""
    return sum(world.hits().values())


def _binary(world: World, url: str, header: dict[str, Any], blob: bytes) -> Any:
    head = json.dumps(header).encode()
    return world.client.post(url, data=head + blob, content_type="application/octet-stream",
                             headers={**world.headers,
                                      "Inference-Header-Content-Length": str(len(head))})


# -- regressions ----------------------------------------------------------------------------
def test_v2_non_finite_outputs_are_null_not_bare_nan(world: World) -> None:
    # A float32 value that the MLP's normalisation turns into inf, then its layers into NaN.
    name = world.model("mlp")
    row = dict(world.rows(1)[0], mean_smoothness=3e38)
    body = {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                        "data": list(row.values())}]}
    resp = world.client.post(f"/v2/models/{name}/infer", json=body, headers=world.headers)
    assert resp.status_code == 200, resp.get_data()[:300]

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    out = json.loads(resp.get_data(as_text=True), parse_constant=refuse)
    assert out["outputs"][1] == {"name": "predict_proba", "datatype": "FP64", "shape": [1, 2],
                                 "data": [None, None]}


def test_v2_deeply_nested_json_is_400(world: World) -> None:
    name = world.model("lr")
    resp = world.client.post(f"/v2/models/{name}/infer", data="[" * 100_000 + "]" * 100_000,
                             content_type="application/json", headers=world.headers)
    assert resp.status_code == 400 and "nested too deeply" in resp.get_json()["error"]


@pytest.mark.parametrize("field,value", [("shape", [True, 30]), ("datatype", ["FP64"])])
def test_v2_odd_shape_or_datatype_is_400_naming_it(world: World, field: str,
                                                   value: Any) -> None:
    name = world.model("lr")
    body = {"inputs": [{**_matrix(world), field: value}]}
    resp = world.client.post(f"/v2/models/{name}/infer", json=body, headers=world.headers)
    assert resp.status_code == 400 and field in resp.get_json()["error"], resp.get_data()[:300]


def test_v2_column_tensor_given_twice_is_400(world: World) -> None:
    name = world.model("lr")
    inputs = [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]}
              for k, v in world.rows(1)[0].items()]
    inputs.append({"name": "mean_radius", "shape": [1], "datatype": "FP64", "data": [1.0]})
    resp = world.client.post(f"/v2/models/{name}/infer", json={"inputs": inputs},
                             headers=world.headers)
    assert resp.status_code == 400
    assert "'mean_radius' given twice" in resp.get_json()["error"]


@pytest.mark.parametrize("extra", [
    {"outputs": [{"name": "nope"}]},
    {"outputs": "predict"},
    {"outputs": [{"name": "predict"}, {"name": "predict"}]},
    {"outputs": [{"name": "predict", "parameters": {"binary_data": "yes"}}]},
    {"parameters": 5},
    {"parameters": {"binary_data_output": "no"}},
    {"id": 7},
])
def test_v2_refused_outputs_are_not_logged_and_counted_once(world: World,
                                                            extra: dict[str, Any]) -> None:
    """Refused before serving: no prediction is logged, and the request counts once against
    the rate limit, as every refused request does (not as a served one besides)."""
    name = world.model("lr")
    hits = _hits(world)
    resp = world.client.post(f"/v2/models/{name}/infer",
                             json={"inputs": [_matrix(world)], **extra}, headers=world.headers)
    assert resp.status_code == 400 and set(resp.get_json()) == {"error"}, resp.get_data()[:300]
    assert _hits(world) == hits + 1
    assert _logged(world, name) == 0


def test_v2_text_predictions_are_bytes_in_json_and_binary(world: World) -> None:
    name = _words_model(world)
    url = f"/v2/models/{name}/infer"
    request = {"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}
    out = world.client.post(url, json=request, headers=world.headers).get_json()
    assert out["outputs"] == [{"name": "predict", "datatype": "BYTES", "shape": [2],
                               "data": ["no", "yes"]}]
    resp = world.client.post(url, json={**request, "parameters": {"binary_data_output": True}},
                             headers=world.headers)
    assert resp.status_code == 200, resp.get_data()[:300]
    n = int(resp.headers["Inference-Header-Content-Length"])
    (tensor,) = json.loads(resp.get_data()[:n])["outputs"]
    assert tensor["datatype"] == "BYTES"
    assert resp.get_data()[n:] == struct.pack("<I", 2) + b"no" + struct.pack("<I", 3) + b"yes"
    # No classes, so no probabilities: refused before anything is logged (counted once).
    world.land()
    logged, hits = _logged(world, name), _hits(world)
    resp = world.client.post(url, json={**request, "outputs": [{"name": "predict_proba"}]},
                             headers=world.headers)
    assert resp.status_code == 400 and "only for classifiers" in resp.get_json()["error"]
    assert (_logged(world, name), _hits(world)) == (logged, hits + 1)


@pytest.mark.parametrize("chunk,after", [
    (struct.pack("<I", 10) + b"abc", b""),  # the length prefix runs past the data
    (struct.pack("<I", 3) + b"abc", b"zz"),  # bytes beyond the declared tensors
])
def test_v2_binary_body_must_match_its_declared_tensors(world: World, chunk: bytes,
                                                        after: bytes) -> None:
    name = _words_model(world)
    header = {"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES",
                          "parameters": {"binary_data_size": len(chunk)}}]}
    resp = _binary(world, f"/v2/models/{name}/infer", header, chunk + after)
    assert resp.status_code == 400 and set(resp.get_json()) == {"error"}, resp.get_data()[:300]
    assert _binary(world, f"/v2/models/{name}/infer", header,
                   struct.pack("<I", 3) + b"abc").status_code == 200  # the same, well formed
