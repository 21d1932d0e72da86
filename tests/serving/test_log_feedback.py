"""The prediction log, the lookup with lineage, feedback once per prediction, quality."""

from __future__ import annotations

from mlwb.predictions import quality
from tests.serving.conftest import World


def test_every_prediction_is_logged_and_traceable(world: World, predict) -> None:
    name = world.model("lr")
    rows = world.rows(3)
    body = predict(name, {"instances": rows}).get_json()
    pid = body["predictions"][1]["prediction_id"]
    early = world.client.get(f"/api/predictions/{pid}", headers=world.headers)
    assert early.status_code == 404 and "not in the store yet" in early.get_json()["message"]
    world.land()
    rec = world.client.get(f"/api/predictions/{pid}", headers=world.headers).get_json()
    assert rec["prediction_id"] == pid and rec["request_id"] == body["request_id"]
    assert (rec["model"], rec["version"], rec["alias"], rec["arm"]) == (
        name, "1", "champion", "champion")
    assert rec["inputs"] == rows[1]
    assert rec["outputs"]["prediction"] == body["predictions"][1]["prediction"]
    assert rec["caller"].startswith("token:") and rec["latency_ms"] > 0
    assert set(rec["timings"]) == {"validate", "preprocess", "model"}
    lineage = rec["lineage"]
    assert lineage["run_id"] == world.zoo.models["lr"].run_id
    assert lineage["run"]["run_id"] == lineage["run_id"]
    assert world.services.lake.count("predictions") == 3
    forged = pid[:-1] + ("0" if pid[-1] != "0" else "1")
    assert world.client.get(f"/api/predictions/{forged}",
                            headers=world.headers).status_code == 404


def test_feedback_once_before_landing_and_quality_per_version(world: World, predict) -> None:
    name = world.model("lr")
    X, y = world.zoo.X, world.zoo.y
    body = predict(name, {"instances": world.rows(10)}).get_json()
    ids = [p["prediction_id"] for p in body["predictions"]]
    preds = [p["prediction"] for p in body["predictions"]]
    post = lambda b: world.client.post("/api/feedback", json=b, headers=world.headers)  # noqa: E731
    # Before the log has landed: the signature is enough to accept the label.
    for i, pid in enumerate(ids[:8]):
        assert post({"prediction_id": pid, "label": int(y.iloc[i])}).status_code == 201
    dup = post({"prediction_id": ids[0], "label": 1})
    assert dup.status_code == 409 and "already" in dup.get_json()["message"]
    forged = ids[9][:-2] + ("00" if not ids[9].endswith("00") else "11")
    assert post({"prediction_id": forged, "label": 1}).status_code == 404
    assert post({"prediction_id": "garbage", "label": 1}).status_code == 404
    assert post({"prediction_id": ids[9]}).status_code == 400
    assert post({"prediction_id": ids[9], "label": [1]}).status_code == 400
    world.land()
    assert world.services.lake.count("feedback") == 8
    rec = world.client.get(f"/api/predictions/{ids[0]}", headers=world.headers).get_json()
    assert rec["feedback"]["label"] == int(y.iloc[0])
    (row,) = quality(world.services.lake, name, "day")
    expected = sum(int(p == y.iloc[i]) for i, p in enumerate(preds[:8])) / 8
    assert (row["version"], row["predictions"], row["labelled"]) == ("1", 10, 8)
    assert row["accuracy"] == expected and row["mae"] is not None
    assert X.shape[0] > 10


def test_labels_and_inputs_keep_their_exact_values(world: World, predict) -> None:
    """Large integers and NaN-free JSON survive parsing, the log and the lake unchanged."""
    name = world.model("lr")
    body = predict(name, {"instances": world.rows(1)}).get_json()
    pid = body["predictions"][0]["prediction_id"]
    big = 123456789012345678901234567890  # beyond 64 bits: a float would lose digits
    resp = world.client.post("/api/feedback", data=f'{{"prediction_id": "{pid}", "label": {big}}}',
                             headers={**world.headers, "Content-Type": "application/json"})
    assert resp.status_code in (200, 201), resp.get_json()
    world.land()
    rec = world.client.get(f"/api/predictions/{pid}", headers=world.headers).get_json()
    assert rec["feedback"]["label"] == big
