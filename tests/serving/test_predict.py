"""The predict path: real registered models, real Redis, real lake."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

import api.serving.runtime as runtime
from mlwb.registry import record_hash
from tests.serving.conftest import World


def test_predict_returns_version_alias_ids_and_matches_pyfunc(world: World, predict) -> None:
    name = world.model("lr")
    rows = world.rows(5)
    resp = predict(name, {"instances": rows})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["model"], body["version"], body["alias"]) == (name, "1", "champion")
    preds = body["predictions"]
    assert len(preds) == 5 and len({p["prediction_id"] for p in preds}) == 5
    assert resp.headers["X-Request-ID"] == body["request_id"]
    pyfunc = world.pyfunc(name)
    expected = pyfunc.predict(world.zoo.X.iloc[:5])
    assert [p["prediction"] for p in preds] == list(expected)
    raw = pyfunc.get_raw_model().predict_proba(world.zoo.X.iloc[:5])
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in preds])
    np.testing.assert_allclose(got, raw, rtol=1e-12, atol=1e-15)  # BLAS layout ulps
    # Positional rows and columns give the same answer; one row: X-Request-ID is its id.
    cols = list(world.zoo.X.columns)
    pos = predict(name, {"inputs": [[r[c] for c in cols] for r in rows]}).get_json()
    by_col = predict(name, {"inputs": {c: [r[c] for r in rows] for c in cols}}).get_json()
    for other in (pos, by_col):
        assert [p["prediction"] for p in other["predictions"]] == list(expected)
    one = predict(name, {"instances": rows[:1]})
    assert one.headers["X-Request-ID"] == one.get_json()["predictions"][0]["prediction_id"]


@pytest.mark.parametrize("kind", ["mlp", "bayes"])
def test_other_model_paths_match_pyfunc(world: World, predict, kind: str) -> None:
    name = world.model(kind)
    resp = predict(name, {"instances": world.rows(40)})
    assert resp.status_code == 200, resp.get_json()
    pyfunc = world.pyfunc(name)
    expected = pyfunc.predict(world.zoo.X.iloc[:40])
    got = resp.get_json()["predictions"]
    assert [p["prediction"] for p in got] == expected.tolist()
    assert set(got[0]["probabilities"]) == {"0", "1"}
    if kind == "mlp":  # numpy sums in another order than torch: float32 ulps apart
        proba = pyfunc.unwrap_python_model().predict_proba(world.zoo.X.iloc[:40])
        np.testing.assert_allclose(
            [[p["probabilities"]["0"], p["probabilities"]["1"]] for p in got], proba,
            rtol=1e-5, atol=1e-7)


def test_a_near_tie_is_scored_by_torch_so_labels_stay_pyfuncs(world: World) -> None:
    import torch

    from api.serving.model import LoadedModel

    name = world.model("mlp")
    pyfunc = world.pyfunc(name)
    loaded = LoadedModel(name, "1", "run", pyfunc)
    assert loaded.batcher is not None and loaded.schema is not None
    parsed = loaded.schema.records(world.rows(3))
    passes = loaded.batcher.passes
    loaded.predict(parsed)
    assert loaded.batcher.passes == passes  # clear margins: numpy alone, no torch pass
    last = pyfunc.unwrap_python_model().module.net[-1]
    with torch.no_grad():  # both classes score alike: every row is a tie
        last.weight[1].copy_(last.weight[0])
        last.bias[1].copy_(last.bias[0])
    out = loaded.predict(parsed)
    assert loaded.batcher.passes == passes + 1  # torch scored them
    assert out.predictions == pyfunc.predict(world.zoo.X.iloc[:3]).tolist()
    assert out.probabilities == [{"0": 0.5, "1": 0.5}] * 3


@pytest.mark.parametrize("mutate, status, needle", [
    (lambda r: r.pop("mean_radius"), 400, "mean_radius"),
    (lambda r: r.update(colour=1.0), 400, "colour"),
    (lambda r: r.update(mean_texture="thick"), 422, "mean_texture"),
    (lambda r: r.update(mean_area=None), 422, "mean_area"),
    (lambda r: r.update(mean_area=True), 422, "mean_area"),
    (lambda r: r.update(worst_area=[1, 2]), 422, "worst_area"),
])
def test_bad_rows_are_refused_naming_the_column(world: World, predict, mutate, status,
                                                 needle) -> None:
    name = world.model("lr")
    rows = world.rows(3)
    mutate(rows[2])
    resp = predict(name, {"instances": rows})
    assert resp.status_code == status, resp.get_json()
    assert needle in resp.get_json()["message"]
    assert "Traceback" not in resp.get_data(as_text=True)


def test_nan_size_and_media_type_limits(world: World, predict, monkeypatch) -> None:
    name = world.model("lr")
    row = world.rows(1)[0]
    text = json.dumps({"instances": [row]}).replace(str(row["mean_radius"]), "NaN", 1)
    resp = world.client.post(f"/api/models/{name}/predict", data=text,
                             content_type="application/json", headers=world.headers)
    assert resp.status_code == 422 and "mean_radius" in resp.get_json()["message"]
    monkeypatch.setattr("api.serving.schema.MAX_ROWS", 10)
    resp = predict(name, {"instances": world.rows(11)})
    assert resp.status_code == 413 and "at most 10" in resp.get_json()["message"]
    world.app.config["MAX_CONTENT_LENGTH"] = 2000
    assert predict(name, {"instances": world.rows(20)}).status_code == 413
    resp = world.client.post(f"/api/models/{name}/predict", data="a,b\n1,2",
                             content_type="text/csv", headers=world.headers)
    assert resp.status_code == 415
    for body in ({"inputs": 5}, {"inputs": [[1.0, 2.0]]}, {"instances": []}, {},
                 {"instances": [row], "inputs": [[1.0]]}, {"instances": [row], "x": 1}):
        resp = predict(name, body)
        assert resp.status_code == 400, (body, resp.get_json())


def test_auth_scopes_and_rate_limit(world: World, predict) -> None:
    name = world.model("lr")
    body = {"instances": world.rows(1)}
    assert world.client.post(f"/api/models/{name}/predict", json=body).status_code == 401
    from tests.factories import make_token

    _, read_only = make_token(world.services, "vic", (__import__("mlwb.roles").roles.Scope.read,))
    resp = predict(name, body, headers={"Authorization": f"Bearer {read_only}"})
    assert resp.status_code == 403
    # A viewer's token may not pin a version; a scientist's may.
    assert predict(name, {**body, "version": "1"}).status_code == 403
    assert predict(name, {**body, "version": "1"}, headers=world.scientist).status_code == 200
    assert predict("no-such-model", body).status_code == 404
    state = world.app.extensions["wb_serving"]
    state.limiter.limit = 3
    world.reset_rate_limits()
    world.land()
    before = world.services.lake.count("predictions")
    responses = [predict(name, body) for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    pid = responses[0].get_json()["predictions"][0]["prediction_id"]
    fb = world.client.post("/api/feedback", json={"prediction_id": pid, "label": 1},
                           headers=world.headers)
    assert fb.status_code == 429 and fb.headers["Retry-After"] == "60"  # the same window
    world.land()
    assert world.services.lake.count("predictions") == before + 3  # refused ones not logged


def test_no_champion_is_a_409_not_a_5xx(world: World, predict) -> None:
    name = world.zoo.register(world.services, "lr")  # registered, never promoted
    resp = predict(name, {"instances": world.rows(1)})
    assert resp.status_code == 409 and "no champion" in resp.get_json()["message"]
    # A scientist may still try the version itself.
    resp = predict(name, {"instances": world.rows(1), "version": "1"}, headers=world.scientist)
    assert resp.status_code == 200 and resp.get_json()["arm"] == "pinned"
    assert predict(name, {"instances": world.rows(1), "version": "7"},
                   headers=world.scientist).status_code == 404


def test_unverifiable_versions_are_not_served(world: World, predict) -> None:
    no_hash = world.model("lr", record=False)
    resp = predict(no_hash, {"instances": world.rows(1)})
    assert resp.status_code == 409 and "hash" in resp.get_json()["message"]
    tampered = world.model("lr", record=False)
    record_hash(world.services.engine, tampered, "1", "0" * 64)
    resp = predict(tampered, {"instances": world.rows(1)})
    assert resp.status_code == 409 and "changed since registration" in resp.get_json()["message"]


def test_alias_move_is_served_within_seconds_without_failures(world: World, monkeypatch) -> None:
    monkeypatch.setattr(runtime, "PLAN_TTL", 0.3)
    name = world.model("lr", "prior")
    url, body = f"/api/models/{name}/predict", {"instances": world.rows(1)}
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        client = world.app.test_client()
        while not stop.is_set():
            r = client.post(url, json=body, headers=world.headers)
            statuses.append(r.status_code)
            versions.append((r.get_json() or {}).get("version", "?"))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    world.promote(name, 2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and versions[-1:] != ["2"]:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert set(statuses) == {200}, sorted(set(statuses))
    assert versions[0] == "1" and versions[-1] == "2"
    # Once the new plan is in, no request goes back to the old version.
    first_new = versions.index("2")
    assert versions[first_new:].count("1") <= len(threads)


def test_concurrent_requests_share_log_round_trips_and_the_limit_stays_exact(
        world: World) -> None:
    """Concurrent requests share Redis round trips (the shipper's); each is still counted
    once against the limit, exactly within one process, and only the admitted ones are
    logged."""
    import threading

    name = world.model("lr")
    state = world.app.extensions.get("wb_serving")
    if state is None:  # built on first use
        assert world.client.post(f"/api/models/{name}/predict",
                                 json={"instances": world.rows(1)},
                                 headers=world.headers).status_code == 200
        state = world.app.extensions["wb_serving"]
    state.limiter.limit = 40
    world.reset_rate_limits()
    world.land()
    before = world.services.lake.count("predictions")
    trips_before = state.shipper.round_trips
    start = threading.Barrier(60)
    codes: list[int] = []

    def caller(i: int) -> None:
        client = world.app.test_client()
        start.wait()
        r = client.post(f"/api/models/{name}/predict", json={"instances": world.rows(1, i)},
                        headers=world.headers)
        codes.append(r.status_code)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(codes) == [200] * 40 + [429] * 20
    world.land()
    assert state.shipper.round_trips - trips_before < 60  # requests shared round trips
    assert world.services.lake.count("predictions") == before + 40
