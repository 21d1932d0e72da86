"""Promotions over HTTP: tokens and roles, four eyes, rollback, traffic, drift, JSON errors."""

from __future__ import annotations

from collections.abc import Callable

import mlflow
from flask.testing import FlaskClient

from mlwb.roles import Scope
from mlwb.services import Services
from tests.factories import land

Bearer = Callable[..., dict[str, str]]


def test_promote_approve_rollback_traffic_over_http(
        client: FlaskClient, bearer: Bearer, model: str, services: Services) -> None:
    sam, ann, abe = bearer("sam"), bearer("ann"), bearer("abe")
    ids = []
    for version in (1, 2):
        resp = client.post(f"/api/models/{model}/promotions", headers=sam,
                           json={"version": version, "note": f"v{version}"})
        assert resp.status_code == 201, resp.get_json()
        ids.append(resp.get_json()["id"])
        assert client.post(f"/api/promotions/{ids[-1]}/approve", headers=ann).status_code == 200
    pending = client.post(f"/api/models/{model}/promotions", headers=ann,
                          json={"version": 3, "alias": "challenger"}).get_json()
    own = client.post(f"/api/promotions/{pending['id']}/approve", headers=ann)
    assert own.status_code == 403 and "four eyes" in own.get_json()["message"]
    listed = client.get("/api/promotions?status=proposed", headers=sam).get_json()
    assert [p["id"] for p in listed["promotions"]] == [pending["id"]]
    assert client.post(f"/api/promotions/{pending['id']}/approve",
                       headers=abe).status_code == 200

    put = client.put(f"/api/models/{model}/traffic", headers=abe,
                     json={"mode": "split", "weights": {"champion": 9, "challenger": 1},
                           "sticky": True})
    assert put.status_code == 200, put.get_json()
    assert put.get_json()["plan"] == {"champion": "2", "challenger": "3", "mode": "split",
                                      "weights": {"champion": 0.9, "challenger": 0.1},
                                      "sticky": True, "blocked": []}
    for seen, status in (("abc", 400), (1, 409)):  # not a version; not the holder
        refused = client.post(f"/api/models/{model}/aliases/champion/rollback", headers=abe,
                              json={"reason": "p99", "from_version": seen})
        assert refused.status_code == status and "message" in refused.get_json()
    assert "held by v2, not v1" in refused.get_json()["message"]
    back = client.post(f"/api/models/{model}/aliases/champion/rollback", headers=abe,
                       json={"reason": "p99 regression", "from_version": 2})
    assert back.status_code == 200 and back.get_json()["version"] == "1"

    hist = client.get(f"/api/models/{model}/history", headers=sam).get_json()
    assert hist["aliases"] == {"champion": "1", "challenger": "3"}
    assert [m["reason"] for m in hist["moves"]] == ["rollback", "promotion", "promotion",
                                                    "promotion"]
    listed_models = client.get("/api/models", headers=sam).get_json()["models"]
    mine = next(m for m in listed_models if m["name"] == model)
    assert mine["aliases"] == mine["mlflow_aliases"] == {"champion": "1", "challenger": "3"}
    land(services)
    ((actor, ip),) = services.lake.query(
        "SELECT actor, ip FROM audit WHERE action = 'alias.rolled_back'")
    assert actor.startswith("token:") and actor.endswith(":abe") and ip == "127.0.0.1"


def test_roles_scopes_and_bad_input_are_clear_4xx(
        client: FlaskClient, bearer: Bearer, model: str) -> None:
    viewer = bearer("vic", Scope.read)
    sam = bearer("sam")
    sam_read = bearer("sam", Scope.read)
    assert client.get(f"/api/models/{model}/history").status_code == 401
    denied = client.post(f"/api/models/{model}/promotions", headers=viewer, json={"version": 1})
    assert denied.status_code == 403  # a viewer cannot even hold the promote scope
    no_scope = client.post(f"/api/models/{model}/promotions", headers=sam_read,
                           json={"version": 1})
    assert no_scope.status_code == 403 and "promote" in no_scope.get_json()["message"]
    cases = [
        ({}, 400, "version"),
        ({"version": "x"}, 400, "positive integer"),
        ({"version": 1, "colour": "red"}, 400, "colour"),
        ({"version": 7}, 404, "no version 7"),
        ({"version": 1, "alias": 5}, 400, "alias must be a string"),
    ]
    for body, status, words in cases:
        resp = client.post(f"/api/models/{model}/promotions", headers=sam, json=body)
        assert resp.status_code == status, (body, resp.get_json())
        assert words in resp.get_json()["message"]
    text = client.post(f"/api/models/{model}/promotions", headers=sam, data="version=1",
                       content_type="text/plain")
    assert text.status_code == 400 and "JSON" in text.get_json()["message"]
    assert client.post("/api/promotions/99999999999999999999999/approve",
                       headers=bearer("ann")).status_code == 404
    assert client.post("/api/models/ghost/promotions", headers=sam,
                       json={"version": 1}).status_code == 404
    bad_mode = client.put(f"/api/models/{model}/traffic", headers=bearer("ann"),
                          json={"mode": "canary"})
    assert bad_mode.status_code == 400 and "single, split or shadow" in bad_mode.get_json()[
        "message"]


def test_drift_over_http(client: FlaskClient, bearer: Bearer, model: str,
                         services: Services) -> None:
    mlflow.MlflowClient(tracking_uri=services.settings.tracking_uri,
                        registry_uri=services.settings.registry_uri
                        ).set_registered_model_alias(model, "champion", "2")
    found = client.get(f"/api/models/{model}/drift", headers=bearer("sam", Scope.read))
    assert found.status_code == 200
    (item,) = found.get_json()["open"]
    assert (item["mlflow_version"], item["recorded_version"]) == ("2", None)
    plan = client.get(f"/api/models/{model}/traffic", headers=bearer("sam")).get_json()["plan"]
    assert plan["champion"] is None and plan["blocked"] == ["2"]
    scraped = client.get("/metrics", headers=bearer("sam", Scope.read)).get_data(as_text=True)
    assert f'wb_alias_drift_open{{model="{model}"}} 1.0' in scraped
    ok = client.post(f"/api/drift/{item['id']}/confirm", headers=bearer("ann"))
    assert ok.status_code == 200 and ok.get_json()["status"] == "confirmed"
    plan = client.get(f"/api/models/{model}/traffic", headers=bearer("sam")).get_json()["plan"]
    assert plan["champion"] == "2" and plan["blocked"] == []
