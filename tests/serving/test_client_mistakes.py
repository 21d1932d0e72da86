"""Client mistakes the signature check alone cannot catch get a 4xx with a reason, never a
500: numbers beyond float64, values a model's own steps refuse, odd params, mixed
signatures, deep JSON, ids with a trailing newline; and a caller cannot grow /metrics."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from tests.serving.conftest import World

JSON = {"Content-Type": "application/json"}
_names = itertools.count(1)


class Counter(PythonModel):  # type: ignore[misc]
    """A generic pyfunc (no fast path): per row, its non-null cells plus params["k"]."""

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> list[float]:
        k = (params or {}).get("k", 0)
        return [float(model_input.iloc[i].notna().sum() + k) for i in range(len(model_input))]


MIXED = Schema([ColSpec("double", "d"), ColSpec("long", "l", required=False),
                ColSpec("string", "s"), ColSpec("datetime", "t", required=False)])
PARAMS = ParamSchema([ParamSpec("k", "long", 0), ParamSpec("mode", "string", "x")])
ROW = {"d": 1.5, "l": 3, "s": "x", "t": "2024-01-01T00:00:00"}


def register_pyfunc(world: World) -> str:
    """The Counter pyfunc with the mixed signature and params, registered and champion."""
    name = world.zoo.register_python(world.services, f"generic-{next(_names)}", Counter(),
                                     ModelSignature(MIXED, None, PARAMS))
    world.promote(name, 1)
    return name


def client_error(resp: Any, status: int | tuple[int, ...] = (400, 422)) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status_code in statuses, (resp.status_code, resp.get_data()[:300])
    body = resp.get_json()
    assert body["message"] and "Traceback" not in body["message"]
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize("face", ["predict", "invocations", "explain"])
def test_an_integer_beyond_float64_names_its_column(world: World, face: str) -> None:
    name = world.model("lr")
    row = dict(world.rows(1)[0], mean_radius=10**400)
    key = "dataframe_records" if face == "invocations" else "instances"
    resp = world.client.post(f"/api/models/{name}/{face}", data=json.dumps({key: [row]}),
                             headers={**world.headers, **JSON})
    body = client_error(resp, 422)
    assert "mean_radius" in (body.get("message", "") + str(body.get("column", "")))


@pytest.mark.parametrize(("kind", "face"), [("lr", "predict"), ("lr", "invocations"),
                                            ("bayes", "predict"), ("lr", "explain")])
def test_a_value_the_models_scaler_overflows_is_a_422_as_pyfunc_refuses_it(
        world: World, kind: str, face: str) -> None:
    """1e308 is a valid double, but scaling makes it infinite and sklearn refuses it: so
    must every path here, the compiled linear kernel (which answered 200) and the generic
    sklearn path (a 500) included."""
    name = world.model(kind)
    row = dict(world.rows(1)[0], mean_smoothness=1e308)
    with pytest.raises(ValueError, match="infinity"), np.errstate(all="ignore"):
        world.pyfunc(name).predict(pd.DataFrame([row]))
    key = "dataframe_records" if face == "invocations" else "instances"
    resp = world.client.post(f"/api/models/{name}/{face}", json={key: [row]},
                             headers=world.headers)
    assert "could not score" in client_error(resp, 422)["message"]


@pytest.mark.parametrize("params", [{"k": "five"}, {"k": 1.5}, {"mode": 3}, {"k": 10**30}])
def test_params_of_the_wrong_type_are_a_client_error(world: World, params: dict[str, Any]
                                                     ) -> None:
    name = register_pyfunc(world)
    ok = world.client.post(f"/api/models/{name}/invocations", headers=world.headers,
                           json={"dataframe_records": [ROW], "params": {"k": 2}})
    assert ok.status_code == 200 and ok.get_json() == {"predictions": [6.0]}
    resp = world.client.post(f"/api/models/{name}/invocations", headers={**world.headers, **JSON},
                             data=json.dumps({"dataframe_records": [ROW], "params": params}))
    client_error(resp)


def test_mixed_signatures_refuse_bad_times_and_take_gaps(world: World) -> None:
    name = register_pyfunc(world)
    url = f"/api/models/{name}/predict"
    resp = world.client.post(url, json={"instances": [dict(ROW, t="not a date")]},
                             headers=world.headers)
    assert "'t'" in client_error(resp, 422)["message"]
    # An optional long left out: pyfunc's own enforcement refuses the gap, so do we (422).
    resp = world.client.post(url, json={"instances": [dict(ROW, l=None)]}, headers=world.headers)
    assert resp.status_code in (200, 422), resp.get_data()[:300]
    assert world.client.post(url, json={"instances": [ROW]},
                             headers=world.headers).status_code == 200


@pytest.mark.parametrize("path", ["predict", "invocations"])
def test_json_nested_deeper_than_any_parser_goes_is_a_400(world: World, path: str) -> None:
    name = world.model("lr")
    resp = world.client.post(f"/api/models/{name}/{path}", data="[" * 100_000 + "]" * 100_000,
                             headers={**world.headers, **JSON})
    client_error(resp, 400)


def test_invocations_reads_media_types_case_insensitively_and_a_single_record(
        world: World) -> None:
    name = world.model("lr")
    row = world.rows(1)[0]
    expected = world.pyfunc(name).predict(pd.DataFrame([row])).tolist()
    for ctype in ("Application/JSON", 'application/json; charset="UTF-8"'):
        resp = world.client.post(f"/api/models/{name}/invocations", data=json.dumps(
            {"dataframe_records": [row]}), headers={**world.headers, "Content-Type": ctype})
        assert resp.status_code == 200, resp.get_data()[:200]
    resp = world.client.post(f"/api/models/{name}/invocations", json={"inputs": row},
                             headers=world.headers)
    assert resp.status_code == 200 and resp.get_json()["predictions"] == expected


def test_a_prediction_id_with_a_trailing_newline_is_not_an_id(
        world: World, predict: Callable[..., Any]) -> None:
    name = world.model("lr")
    pid = predict(name, {"instances": world.rows(1)}).get_json()["predictions"][0][
        "prediction_id"]
    first = world.client.post("/api/feedback", json={"prediction_id": pid, "label": 1},
                              headers=world.headers)
    assert first.status_code == 201
    again = world.client.post("/api/feedback", json={"prediction_id": pid + "\n", "label": 0},
                              headers=world.headers)
    assert again.status_code == 404


def test_refused_callers_cannot_add_metrics_series(world: World) -> None:
    """Requests refused before a model is resolved carry no model label: the names in their
    URLs are the caller's to choose."""
    for i in range(20):
        assert world.client.post(f"/api/models/junk-{i}/predict", json={}).status_code == 401
        resp = world.client.post(f"/api/models/junk-x{i}/predict", headers=world.headers,
                                 json={"instances": world.rows(1)})
        assert resp.status_code == 404
    world.app.extensions["wb_serving"].metrics.flush()
    fields = [f.decode() for f in world.services.redis.hkeys("wb:metrics:serving")]
    assert fields and not [f for f in fields if "junk" in f]


def test_explain_refuses_a_version_it_cannot_verify(world: World) -> None:
    name = world.model("lr", record=False)
    resp = world.client.post(f"/api/models/{name}/explain", headers=world.scientist,
                             json={"instances": world.rows(1), "version": 1})
    assert resp.status_code == 409 and "hash" in resp.get_json()["message"]


def test_what_a_process_remembers_about_names_is_bounded(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Model names and versions come from callers: plans, locks and refusals are kept for
    at most MAX_TRACKED of them, and a real model keeps serving through the churn."""
    import api.serving.runtime as runtime_module

    monkeypatch.setattr(runtime_module, "MAX_TRACKED", 8)
    name = world.model("lr")
    body = {"instances": world.rows(1)}
    url = f"/api/models/{name}/predict"
    for i in range(30):
        assert world.client.post(f"/api/models/nope-{i}/predict", json=body,
                                 headers=world.headers).status_code == 404
        assert world.client.post(url, json=body, headers=world.headers).status_code == 200
        resp = world.client.get(f"/v2/models/{name}/versions/{100 + i}/ready",
                                headers=world.headers)
        assert resp.status_code in (400, 404), resp.status_code
    runtime = world.app.extensions["wb_serving"].runtime
    for table in (runtime._plans, runtime._refreshing, runtime._load_locks, runtime._failed):
        assert len(table) <= 8


def test_refused_requests_count_against_the_rate_limit(
        world: World, predict: Callable[..., Any]) -> None:
    """A flood of bad bodies or unknown models is not free: each counts as a hit, and once
    over the limit the token gets 429 for good requests too, until the window ends."""
    from api.serving.service import serving

    name = world.model("lr")
    state = serving(world.app)
    state.limiter.limit = 4
    state.limiter.window = 86_400  # one window for the whole test (no boundary to cross)
    world.reset_rate_limits()
    assert predict(name, {"instances": [{"nope": 1}]}).status_code == 400
    assert predict("no-such-model", {"instances": world.rows(1)}).status_code == 404
    bad_json = world.client.post(f"/api/models/{name}/invocations", data="{",
                                 headers={**world.headers, **JSON})
    assert bad_json.status_code == 400
    assert predict(name, {"instances": world.rows(1)}).status_code == 200  # the 4th hit
    assert predict(name, {"instances": [{"nope": 1}]}).status_code == 400  # the 5th: over
    assert predict(name, {"instances": world.rows(1)}).status_code == 429


class Rows(PythonModel):  # type: ignore[misc]
    """A pyfunc without a signature: one constant per row, whatever the row holds."""

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> list[float]:
        return [1.0] * len(model_input)


@pytest.mark.parametrize("path", ["predict", "invocations"])
def test_inputs_too_deep_to_record_are_a_422_and_leave_no_row(world: World, path: str
                                                              ) -> None:
    # A model without a signature takes its records unchecked; a body parser goes deeper
    # (1,024 levels) than any JSON writer of the log will (orjson 255, json ~950 here).
    name = world.zoo.register_python(world.services, f"untyped-{next(_names)}", Rows(), None)
    world.promote(name, 1)
    url = f"/api/models/{name}/{path}"
    key = "instances" if path == "predict" else "dataframe_records"
    assert world.client.post(url, json={key: [{"x": 1}]},
                             headers=world.headers).status_code == 200
    deep = f'{{"{key}": [{{"x": {"[" * 1000 + "]" * 1000}}}]}}'
    body = client_error(world.client.post(url, data=deep, headers={**world.headers, **JSON}),
                        422)
    assert "recorded" in body["message"]
    world.land()
    n = world.services.lake.df("SELECT count(*) AS n FROM predictions WHERE model = ?",
                               [name])["n"][0]
    assert n == 1  # the first request's row; nothing of the refused one
