"""The WSGI fast path of ``/predict``: the same answers, log and refusals as the Flask view."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable

import mlflow
import pytest
import redis
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from api.serving import shipper as shipper_module
from api.serving.fastpath import FastPredict
from api.serving.service import serving
from api.serving.shipper import client_for
from mlwb.redis_script import FastScript
from mlwb.redis_server import free_port
from mlwb.roles import Scope
from tests.factories import make_token
from tests.serving.conftest import World


class Opaque(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """Answers objects no JSON writer knows: the log takes their text, a response cannot."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return [object() for _ in range(len(model_input))]


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
    world.reset_rate_limits()
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
        (predict(name, {}), 400, "instances"),
        (predict(name, {"instances": [row], "inputs": [[1.0]]}), 400, "exactly one"),
        (predict(name, {"inputs": "a"}), 400, "inputs"),
        (predict(name, {"instances": [{**row, "mean_area": "big"}]}), 422, "mean_area"),
        (predict("no-such-model", {"instances": [row]}), 404, "no-such-model"),
    ]
    for resp, status, needle in cases:
        assert resp.status_code == status, resp.get_json()
        assert needle in resp.get_json()["message"]
    assert fast(world).served == served  # every refusal came from Flask
    # Each refusal after authentication counts once against its caller's limit: seven of
    # vic's, one of the read-only token's; the unknown token has no caller to count.
    per_caller = world.hits()
    assert sorted(per_caller.values()) == [1, 7]
    assert per_caller[read_only_id] == 1


def test_log_unavailable_is_a_503_counted_once_and_nothing_served_is_lost(
        world: World, predict) -> None:
    name = world.model("lr")
    state = serving(world.app)
    shipper = state.shipper
    world.land()
    before = world.services.lake.count("predictions")
    good = shipper.script
    dead = redis.Redis(port=free_port(), socket_connect_timeout=1)  # nothing listens there
    shipper.script = FastScript(dead, good.source)
    try:
        # Served before the shipper found Redis gone: its row waits in the spool.
        assert predict(name, {"instances": world.rows(1)}).status_code == 200
        until(lambda: shipper.failing is not None)
        served = fast(world).served
        resp = predict(name, {"instances": world.rows(1)})
    finally:
        shipper.script = good
    assert resp.status_code == 503
    message = resp.get_json()["message"]
    assert "prediction log" in message and "retry" in message
    assert fast(world).served == served + 1  # answered where it was counted, not twice
    assert "Traceback" not in json.dumps(resp.get_json())
    until(lambda: shipper.failing is None)  # Redis is back: the spool is shipped
    assert predict(name, {"instances": world.rows(1)}).status_code == 200
    world.land()
    assert world.services.lake.count("predictions") == before + 2  # not the refused one


def test_a_spool_that_cannot_be_written_is_a_503_that_costs_no_hit(
        world: World, predict) -> None:
    """The log's spool cannot be written (a file stands where its folder goes): each
    request is a 503 saying so and telling the caller to retry, nothing is recorded, and
    no hit is counted (the failure is ours: a caller that retries as told must not run
    into its rate limit). Once the spool can be written, the retries are served."""
    name = world.model("lr")
    state = serving(world.app)
    state.limiter.limit = 2
    state.limiter.window = 86_400  # one window for the whole test (no boundary to cross)
    world.reset_rate_limits()
    world.land()
    before = world.services.lake.count("predictions")
    spool_dir = world.services.settings.spool_dir
    assert not spool_dir.exists()  # nothing spooled yet in this test's data folder
    spool_dir.write_text("not a folder")
    try:
        for _ in range(3):
            resp = predict(name, {"instances": world.rows(1)})
            assert resp.status_code == 503
            message = resp.get_json()["message"]
            assert "spool could not be written" in message and "retry" in message
    finally:
        spool_dir.unlink()
    assert not any(world.hits().values())  # (a hit shipped, then taken back: 0)
    codes = [predict(name, {"instances": world.rows(1)}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    world.land()
    assert world.services.lake.count("predictions") == before + 2


def test_a_redis_that_stops_answering_is_a_503_until_it_answers(
        world: World, predict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis stopped (SIGSTOP: connections stay open, nothing answers): the shipper gives up
    after its timeout, requests are refused meanwhile, the spool is kept and shipped once
    Redis goes on."""
    name = world.model("lr")
    shipper = serving(world.app).shipper
    world.land()
    before = world.services.lake.count("predictions")
    monkeypatch.setattr(shipper_module, "TIMEOUT", 0.5)
    good = shipper.script
    url = world.services.settings.effective_redis_url
    shipper.script = FastScript(client_for(url), good.source)
    assert predict(name, {"instances": world.rows(1)}).status_code == 200
    shipper.flush()  # its connection is open: only a reply can be missing now
    pid = int(world.services.redis.info("server")["process_id"])
    resume = threading.Timer(15, os.kill, (pid, signal.SIGCONT))  # whatever happens here
    os.kill(pid, signal.SIGSTOP)
    resume.start()
    try:
        assert predict(name, {"instances": world.rows(1)}).status_code == 200  # spooled
        # Well before redis-py 8's default timeout (5 s): the shipper's own one applies.
        until(lambda: shipper.failing is not None, timeout=4)
        resp = predict(name, {"instances": world.rows(1)})
    finally:
        os.kill(pid, signal.SIGCONT)
        resume.cancel()
    assert resp.status_code == 503
    assert "prediction log" in resp.get_json()["message"]
    until(lambda: shipper.failing is None)
    shipper.script = good
    world.land()
    assert world.services.lake.count("predictions") == before + 2  # both served, once

def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_invocations_fast_path_answers_as_the_flask_view(world: World) -> None:
    name = world.model("lr")
    X = world.zoo.X.iloc[:4]
    split = json.loads(X.to_json(orient="split"))
    split.pop("index")
    url = f"/api/models/{name}/invocations"
    for body in ({"dataframe_split": split}, {"dataframe_records": X.to_dict("records")},
                 {"inputs": X.to_dict("list"), "params": {}}):
        served = fast(world).served
        quick = world.client.post(url, json=body, headers=world.headers)
        slow = world.client.post(url + "?trace=1", json=body, headers=world.headers)
        assert quick.status_code == slow.status_code == 200, quick.get_json()
        assert fast(world).served == served + 1
        assert quick.get_json() == slow.get_json()
        assert quick.get_data() == slow.get_data()  # MLflow's compact form, no newline
        # Flask adds `Vary: Cookie` (its session was looked at); a token call has no cookie.
        assert {k for k, _ in quick.headers} == {k for k, _ in slow.headers if k != "Vary"}
        assert len(quick.headers["X-Prediction-IDs"].split(",")) == 4
        assert quick.headers["X-Model-Arm"] == slow.headers["X-Model-Arm"] == "champion"
    # Refusals are the Flask view's, in MLflow's error shape, whether parsing or the model
    # refuses; a media type parameter other than charset=utf-8 goes to Flask as well.
    served = fast(world).served
    bad = [
        world.client.post(url, json={"dataframe_split": split, "extra": 1},
                          headers=world.headers),
        world.client.post(url, json={"dataframe_records": [{"x": 1.0}]}, headers=world.headers),
        world.client.post(url, data=json.dumps({"inputs": X.to_dict("list")}),
                          headers={**world.headers,
                                   "Content-Type": "application/json; charset=latin-1"}),
        world.client.post(url, json={"inputs": X.to_dict("list")},
                          headers={"Authorization": "Bearer wbt_nope"}),
    ]
    assert [r.status_code for r in bad] == [400, 400, 415, 401]
    for resp in bad:
        assert set(resp.get_json()) == {"error_code", "message"}
    assert fast(world).served == served


def test_an_error_of_ours_after_counting_is_a_json_500_counted_once(world: World,
                                                                     predict) -> None:
    name = world.zoo.register_python(world.services, "opaque", Opaque(),
                                     ModelSignature(Schema([ColSpec("double", "x")])))
    world.promote(name, 1)
    world.reset_rate_limits()
    served = fast(world).served
    quick = predict(name, {"instances": [{"x": 1.0}]})
    assert fast(world).served == served + 1
    slow = world.client.post(f"/api/models/{name}/predict?trace=1",
                             json={"instances": [{"x": 1.0}]}, headers=world.headers)
    for resp in (quick, slow):
        assert resp.status_code == 500
        body = resp.get_json()
        assert set(body) == {"error", "message", "incident"}
        assert body["error"] == "internal_error" and body["incident"] in body["message"]
    assert sum(world.hits().values()) == 2  # once each


def test_odd_lengths_and_the_live_body_limit_are_flasks(world: World, predict) -> None:
    name = world.model("lr")
    body = {"instances": world.rows(8)}
    served = fast(world).served
    limit = world.app.config["MAX_CONTENT_LENGTH"]
    world.app.config["MAX_CONTENT_LENGTH"] = 200  # changed after start: read per request
    try:
        assert predict(name, body).status_code == 413
    finally:
        world.app.config["MAX_CONTENT_LENGTH"] = limit
    odd = world.client.post(f"/api/models/{name}/predict", json=body, headers=world.headers,
                            environ_overrides={"CONTENT_LENGTH": "\u00b2"})
    assert odd.status_code < 500 and odd.is_json
    assert fast(world).served == served
    assert predict(name, body).status_code == 200 and fast(world).served == served + 1
