"""MLflow scoring protocol: the same bodies as `mlflow models serve`, the same answers."""

from __future__ import annotations

import json

import pytest

from tests.serving.conftest import World

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture
def mlflow_server(world: World):  # type: ignore[no-untyped-def]
    """MLflow's own scoring app for version 1 of a fresh model, in-process."""
    from mlflow.pyfunc import scoring_server
    from starlette.testclient import TestClient

    name = world.model("lr")
    return name, TestClient(scoring_server.init(world.pyfunc(name)))


def bodies(world: World) -> list[tuple[str, str]]:
    X = world.zoo.X.iloc[:7]
    split = json.loads(X.to_json(orient="split"))
    split.pop("index")
    return [
        ("application/json", json.dumps({"dataframe_split": split})),
        ("application/json", json.dumps({"dataframe_records": X.to_dict("records")})),
        ("application/json", json.dumps({"instances": X.to_dict("records")})),
        ("application/json", json.dumps({"inputs": X.to_dict("list")})),
        ("application/json", json.dumps({"inputs": X.to_dict("records"), "params": {}})),
        ("text/csv", X.to_csv(index=False)),
        ("application/json; charset=utf-8", json.dumps({"dataframe_split": split})),
    ]


def test_same_bodies_same_predictions_as_mlflow(world: World, mlflow_server) -> None:
    name, reference = mlflow_server
    for content_type, data in bodies(world):
        theirs = reference.post("/invocations", content=data,
                                headers={"Content-Type": content_type})
        ours = world.client.post(f"/api/models/{name}/invocations", data=data,
                                 headers={**world.headers, "Content-Type": content_type})
        assert theirs.status_code == 200, (content_type, data[:80], theirs.text[:300])
        assert ours.status_code == 200, (content_type, data[:80], ours.get_json())
        assert ours.get_json() == theirs.json(), content_type
        ids = ours.headers["X-Prediction-IDs"].split(",")
        assert len(ids) == 7 and ours.headers["X-Model-Version"] == "1"


def test_client_mistakes_are_4xx_in_mlflows_error_shape(world: World, mlflow_server) -> None:
    name, reference = mlflow_server
    X = world.zoo.X.iloc[:2]
    records = X.to_dict("records")
    bad_type = [dict(records[0], mean_radius="big")]
    cases = [
        ("application/json", json.dumps({"dataframe_records": bad_type}), 422, "mean_radius"),
        ("application/json", json.dumps({"dataframe_records": [{"x": 1}]}), 400, "missing"),
        ("application/json", json.dumps({"inputs": [[1, 2]]}), 400, "column"),
        ("application/json", json.dumps({"instances": records, "inputs": records}), 400,
         "exactly one"),
        ("application/json", json.dumps({"dataframe_split": {"columns": ["a"],
                                                             "data": [[1, 2]]}}), 400, ""),
        ("application/json", "{not json", 400, "JSON"),
        ("application/json", json.dumps({"dataframe_records": records, "params": 3}), 400,
         "params"),
        ("text/csv", "mean_radius\n1.0\n", 400, "missing"),
        ("text/plain", "hello", 415, "application/json"),
        ("application/json; charset=latin-1", "{}", 415, "UTF-8"),
    ]
    for content_type, data, status, needle in cases:
        ours = world.client.post(f"/api/models/{name}/invocations", data=data,
                                 headers={**world.headers, "Content-Type": content_type})
        body = ours.get_json()
        assert ours.status_code == status, (data[:60], body)
        assert set(body) == {"error_code", "message"} and needle in body["message"]
        assert "Traceback" not in ours.get_data(as_text=True)
    # MLflow itself answers a wrong type with a 400 carrying a stack trace; we name the column.
    theirs = reference.post("/invocations", content=json.dumps({"dataframe_records": bad_type}),
                            headers={"Content-Type": "application/json"})
    assert theirs.status_code >= 400
    unauth = world.client.post(f"/api/models/{name}/invocations", json={"inputs": records})
    assert unauth.status_code == 401 and unauth.get_json()["error_code"] == "UNAUTHENTICATED"
