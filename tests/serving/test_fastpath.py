"""The WSGI fast path of ``/predict``: the same answers, log and refusals as the Flask view."""

from __future__ import annotations

import json

import redis

from api.serving.fastpath import FastPredict
from api.serving.service import serving
from mlwb.redis_script import FastScript
from mlwb.redis_server import free_port
from mlwb.roles import Scope
from tests.factories import make_token
from tests.serving.conftest import World

VOLATILE = {"request_id", "prediction_id"}  # fresh per request
VOLATILE_HEADERS = {"X-Request-ID", "Server-Timing"}


def fast(world: World) -> FastPredict:
    wsgi = world.app.wsgi_app
    assert isinstance(wsgi, FastPredict)
    return wsgi


def strip(body: dict) -> dict:
    out = {k: v for k, v in body.items() if k not in VOLATILE}
    out["predictions"] = [{k: v for k, v in p.items() if k not in VOLATILE}
                          for p in body["predictions"]]
    return out


def test_fast_path_answers_and_logs_as_the_flask_view(world: World, predict) -> None:
    name = world.model("mlp")
    body = {"instances": world.rows(3), "traffic_key": "caller-7"}
    served = fast(world).served
    quick = predict(name, body)
    assert quick.status_code == 200 and fast(world).served == served + 1
    # A query string, a cookie or a media type parameter the fast path does not take: Flask.
    slow = world.client.post(f"/api/models/{name}/predict?trace=1", json=body,
                             headers=world.headers)
    world.client.set_cookie("unrelated", "1")
    with_cookie = predict(name, body)
    world.client.delete_cookie("unrelated")
    assert fast(world).served == served + 1
    for other in (slow, with_cookie):
        assert other.status_code == 200
        assert strip(other.get_json()) == strip(quick.get_json())
        assert other.headers["Content-Type"] == quick.headers["Content-Type"]
        assert {k for k, _ in other.headers if k != "Vary"} == {k for k, _ in quick.headers}
        for key, value in quick.headers:
            if key not in VOLATILE_HEADERS and key != "Content-Length":
                assert other.headers[key] == value, key
    assert quick.get_data().endswith(b"}\n")  # jsonify's compact form, newline included
    timing = quick.headers["Server-Timing"]
    assert [part.split(";")[0] for part in timing.split(", ")] == [
        "validate", "preprocess", "model", "log"]
    # Both logged alike, with the caller and stage timings.
    world.land()
    rows = {}
    for resp in (quick, slow):
        pid = resp.get_json()["predictions"][0]["prediction_id"]
        got = world.client.get(f"/api/predictions/{pid}", headers=world.headers).get_json()
        rows[resp is quick] = got
    for got in rows.values():
        assert got["caller"].startswith("token:") and got["arm"] == "champion"
        assert set(got["timings"]) == {"validate", "preprocess", "model"}
    assert rows[True]["inputs"] == rows[False]["inputs"] == body["instances"][0]
    assert rows[True]["outputs"] == rows[False]["outputs"]


def test_refusals_are_flasks_and_count_once(world: World, predict) -> None:
    name = world.model("lr")
    row = world.rows(1)[0]
    served = fast(world).served
    r = world.services.redis
    r.delete(*r.keys("wb:rl:predict:*") or ["none"])
    read_only_id, read_only = make_token(world.services, "vic", (Scope.read,))
    cases = [
        (predict(name, {"instances": [row]}, headers={"Authorization": "Bearer wb_nope"}),
         401, "token"),
        (predict(name, {"instances": [row]},
                 headers={"Authorization": f"Bearer {read_only}"}), 403, "predict"),
        (world.client.post(f"/api/models/{name}/predict", data=b"{not json",
                           headers={**world.headers, "Content-Type": "application/json"}),
         400, "JSON"),
        (predict(name, {"rows": [row]}), 400, "rows"),
        (predict(name, {"instances": [{**row, "mean_area": "big"}]}), 422, "mean_area"),
        (predict("no-such-model", {"instances": [row]}), 404, "no-such-model"),
    ]
    for resp, status, needle in cases:
        assert resp.status_code == status, resp.get_json()
        assert needle in resp.get_json()["message"]
    assert fast(world).served == served  # every refusal came from Flask
    # Each refusal after authentication counts once against its caller's limit: four of
    # vic's, one of the read-only token's; the unknown token has no caller to count.
    per_caller: dict[str, int] = {}
    for key in r.keys("wb:rl:predict:*"):
        caller = key.decode().split(":")[3]
        per_caller[caller] = per_caller.get(caller, 0) + int(r.get(key))
    assert sorted(per_caller.values()) == [1, 4]
    assert per_caller[read_only_id] == 1


def test_log_unavailable_is_a_503_counted_once(world: World, predict) -> None:
    name = world.model("lr")
    state = serving(world.app)
    good = state.script
    dead = redis.Redis(port=free_port(), socket_connect_timeout=1)  # nothing listens there
    state.script = FastScript(dead, good.source)
    served = fast(world).served
    try:
        resp = predict(name, {"instances": world.rows(1)})
    finally:
        state.script = good
    assert resp.status_code == 503
    message = resp.get_json()["message"]
    assert "prediction log" in message and "retry" in message
    assert fast(world).served == served + 1  # answered where it was counted, not twice
    assert "Traceback" not in json.dumps(resp.get_json())
    assert predict(name, {"instances": world.rows(1)}).status_code == 200
