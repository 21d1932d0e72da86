"""Promotions under concurrency and staleness: decisions never overwrite each other, alias
changes are serialised, a stale proposal cannot re-record the current holder, and every
denial is audited (those raised inside the service functions too)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import mlflow
import pytest
from flask.testing import FlaskClient

from mlwb import aliases
from mlwb import promotions as pr
from mlwb.alias_drift import check_alias_drift, list_drift, resolve_drift
from mlwb.errors import Conflict
from mlwb.roles import Scope
from mlwb.services import Services
from mlwb.users import Principal
from tests.factories import cli_invoker, land
from tests.promotions.models import Store, register


def promote(services: Services, people: dict[str, Principal], model: str, version: int) -> None:
    pr.approve(services, people["ann"], pr.propose(services, people["sam"], model, version).id)


def test_a_reject_never_overwrites_an_approval_made_meanwhile(
        services: Services, people: dict[str, Principal], model: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The approval lands between the reject's read and its write (forced here by running it
    right after the reject read the proposal): the reject must fail, not relabel it."""
    promo = pr.propose(services, people["sam"], model, 1)
    read = pr._pending

    def read_then_approve(conn: Any, pid: int) -> Any:
        row = read(conn, pid)
        monkeypatch.setattr(pr, "_pending", read)
        pr.approve(services, people["ann"], promo.id)
        return row

    monkeypatch.setattr(pr, "_pending", read_then_approve)
    with pytest.raises(Conflict, match="decided meanwhile"):
        pr.reject(services, people["abe"], promo.id, "no")
    assert pr.get_promotion(services.engine, promo.id).status == "approved"
    assert pr.history(services, model).aliases == {"champion": "1"}


def test_rollbacks_of_one_alias_take_turns(services: Services, people: dict[str, Principal],
                                            model: str) -> None:
    """Two approvers roll back at the same moment: one after the other (3 -> 2 -> 1), never
    both from the same history (both to 2, the holder stack popped twice)."""
    for v in (1, 2, 3):
        promote(services, people, model, v)
    barrier = threading.Barrier(2)
    done: list[str] = []

    def roll(who: str) -> None:
        barrier.wait()
        done.append(pr.rollback(services, people[who], model).version or "")

    threads = [threading.Thread(target=roll, args=(who,)) for who in ("ann", "abe")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(done) == ["1", "2"]
    assert pr.history(services, model).aliases == {"champion": "1"}
    with pytest.raises(Conflict, match="nothing to roll back to"):
        pr.rollback(services, people["ann"], model)


def test_rollbacks_from_the_holder_they_saw_roll_back_once(
        services: Services, people: dict[str, Principal], model: str) -> None:
    """Two approvers press rollback on v3 at the same moment, each saying what they saw:
    one moves the alias to 2, the other is told it moved meanwhile and moves nothing."""
    for v in (1, 2, 3):
        promote(services, people, model, v)
    barrier = threading.Barrier(2)
    done: list[str] = []
    refused: list[str] = []

    def roll(who: str) -> None:
        barrier.wait()
        try:
            done.append(pr.rollback(services, people[who], model, from_version=3).version
                        or "")
        except Conflict as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=roll, args=(who,)) for who in ("ann", "abe")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert done == ["2"]
    assert len(refused) == 1 and "held by v2, not v3" in refused[0]
    assert pr.history(services, model).aliases == {"champion": "2"}
    assert mlflow.MlflowClient(tracking_uri=services.settings.tracking_uri,
                               registry_uri=services.settings.registry_uri
                               ).get_registered_model(model).aliases == {"champion": 2}
    assert [m.version for m in pr.history(services, model).moves] == ["2", "3", "2", "1"]


def test_an_approval_after_the_alias_moved_is_refused(
        services: Services, people: dict[str, Principal], model: str) -> None:
    """A proposal reviewed against one holder is not applied to another: after a rollback
    since the proposal, approving it is a 409 and nothing moves; proposed again, it goes."""
    for v in (1, 2):
        promote(services, people, model, v)
    stale = pr.propose(services, people["sam"], model, 3)
    pr.rollback(services, people["ann"], model, reason="bad p99")
    with pytest.raises(Conflict, match=r"moved after promotion .* \(v2 -> v1, rollback by"):
        pr.approve(services, people["abe"], stale.id)
    assert pr.get_promotion(services.engine, stale.id).status == "proposed"
    assert pr.history(services, model).aliases == {"champion": "1"}
    again = pr.propose(services, people["sam"], model, 3)
    assert pr.get_promotion(services.engine, stale.id).status == "superseded"
    assert pr.approve(services, people["abe"], again.id).status == "approved"
    assert pr.history(services, model).aliases == {"champion": "3"}


def test_a_change_waits_for_the_alias_lock_and_then_says_retry(
        services: Services, people: dict[str, Principal], model: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for v in (1, 2, 3):
        promote(services, people, model, v)
    monkeypatch.setattr(aliases, "ALIAS_LOCK_WAIT", 0.2)
    with aliases.alias_lock(services.redis, model, "champion"), pytest.raises(
            Conflict, match="in progress; retry"):
        pr.rollback(services, people["ann"], model)
    assert pr.rollback(services, people["ann"], model).version == "2"


def test_a_stale_proposal_for_the_current_holder_is_refused(
        services: Services, people: dict[str, Principal], model: str) -> None:
    promote(services, people, model, 1)
    stale = pr.propose(services, people["sam"], model, 2)
    mlflow.MlflowClient(tracking_uri=services.settings.tracking_uri,
                        registry_uri=services.settings.registry_uri
                        ).set_registered_model_alias(model, "champion", "2")
    (drift,) = check_alias_drift(services, model)
    resolve_drift(services, people["abe"], drift.id, "confirm")
    with pytest.raises(Conflict, match="already holds"):
        pr.approve(services, people["ann"], stale.id)
    assert pr.rollback(services, people["ann"], model).version == "1"


def test_drift_confirm_names_its_model(services: Services, people: dict[str, Principal],
                                       store: Store, model: str, settings: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    other = register(services, store)
    mlflow.MlflowClient(tracking_uri=services.settings.tracking_uri,
                        registry_uri=services.settings.registry_uri
                        ).set_registered_model_alias(other, "champion", "2")
    (drift,) = check_alias_drift(services, other)
    run = next(cli_invoker(settings, monkeypatch))
    result = run("models", "drift", model, "--confirm", str(drift.id))
    assert result.exit_code != 0 and f"is about {other!r}" in result.output
    assert [d.status for d in list_drift(services.engine, other, None)] == ["open"]


def test_denials_inside_service_functions_are_audited(
        client: FlaskClient, bearer: Callable[..., dict[str, str]], services: Services,
        model: str) -> None:
    ann = bearer("ann", Scope.promote)
    pid = client.post(f"/api/models/{model}/promotions", headers=ann,
                      json={"version": 1}).get_json()["id"]
    assert client.post(f"/api/promotions/{pid}/approve", headers=ann).status_code == 403
    land(services)
    denied = services.lake.query(
        "SELECT actor, after FROM audit WHERE action = 'auth.denied'")
    assert len(denied) == 1 and "four eyes" in denied[0][1]


def test_rolling_back_to_a_version_deleted_from_mlflow_is_a_409(
        client: FlaskClient, bearer: Callable[..., dict[str, str]], services: Services,
        people: dict[str, Principal], model: str) -> None:
    """Not a 503 ("retry"): retrying cannot bring the version back."""
    for v in (1, 2):
        promote(services, people, model, v)
    mlflow.MlflowClient(tracking_uri=services.settings.tracking_uri,
                        registry_uri=services.settings.registry_uri
                        ).delete_model_version(model, "1")
    resp = client.post(f"/api/models/{model}/aliases/champion/rollback",
                       headers=bearer("abe", Scope.promote))
    assert resp.status_code == 409, resp.get_json()
    assert "promote a version that exists" in resp.get_json()["message"]
    assert pr.history(services, model).aliases == {"champion": "2"}  # nothing recorded


def test_a_drift_that_goes_away_is_audited(services: Services, people: dict[str, Principal],
                                           model: str) -> None:
    promote(services, people, model, 1)
    mlflow_client = mlflow.MlflowClient(tracking_uri=services.settings.tracking_uri,
                                        registry_uri=services.settings.registry_uri)
    mlflow_client.set_registered_model_alias(model, "champion", "3")
    (drift,) = check_alias_drift(services, model)
    mlflow_client.set_registered_model_alias(model, "champion", "1")  # put back by hand
    assert check_alias_drift(services, model) == []
    land(services)
    gone = services.lake.query("SELECT target, after FROM audit WHERE action = "
                               "'alias.drift_gone'")
    assert gone == [(f"model:{model}@champion",
                     '{"reason":"MLflow agrees with the record again"}')]
    assert [d.status for d in list_drift(services.engine, model, None)] == ["gone"]
    assert drift.status == "open"


def test_the_history_of_an_unknown_model_is_a_404(
        client: FlaskClient, bearer: Callable[..., dict[str, str]], settings: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    resp = client.get("/api/models/ghost/history", headers=bearer("vic", Scope.read))
    assert resp.status_code == 404 and "no registered model" in resp.get_json()["message"]
    run = next(cli_invoker(settings, monkeypatch))
    result = run("models", "history", "ghost")
    assert result.exit_code != 0 and "no registered model" in result.output
