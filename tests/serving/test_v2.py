"""Open Inference Protocol v2: metadata, readiness, JSON and binary tensors."""

from __future__ import annotations

import json

import numpy as np

from tests.serving.conftest import World


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
