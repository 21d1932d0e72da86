"""Aliases moved in MLflow directly: detected, audited, not served until an approver decides."""

from __future__ import annotations

import mlflow
import pytest

from mlwb import promotions as pr
from mlwb.alias_drift import check_alias_drift, list_drift, open_counts, resolve_drift
from mlwb.errors import Conflict, PermissionDenied
from mlwb.services import Services
from mlwb.users import Principal
from tests.factories import land


def mlflow_client(services: Services) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=services.settings.tracking_uri,
                               registry_uri=services.settings.registry_uri)


def test_direct_move_is_detected_blocked_and_confirmed(
        services: Services, people: dict[str, Principal], model: str) -> None:
    pr.approve(services, people["ann"], pr.propose(services, people["sam"], model, 1).id)
    mlflow_client(services).set_registered_model_alias(model, "champion", "3")
    assert pr.serving_plan(services.engine, model).champion == "1"

    found = check_alias_drift(services, model)
    assert [(d.alias, d.mlflow_version, d.recorded_version, d.status) for d in found] == [
        ("champion", "3", "1", "open")]
    assert check_alias_drift(services, model) == found  # known: recorded once
    plan = pr.serving_plan(services.engine, model)
    assert (plan.champion, plan.blocked) == ("1", ["3"])
    assert open_counts(services.engine)[model] == 1

    with pytest.raises(PermissionDenied):
        resolve_drift(services, people["sam"], found[0].id)
    confirmed = resolve_drift(services, people["ann"], found[0].id, "confirm")
    assert confirmed.status == "confirmed" and confirmed.resolved_by == people["ann"].actor
    plan = pr.serving_plan(services.engine, model)
    assert (plan.champion, plan.blocked) == ("3", [])
    assert pr.history(services, model).moves[0].reason == "drift_confirmed"
    with pytest.raises(Conflict, match="already confirmed"):
        resolve_drift(services, people["abe"], found[0].id)
    land(services)
    actions = [r[0] for r in services.lake.query(
        "SELECT action FROM audit WHERE action LIKE 'alias.%' ORDER BY seq")]
    assert actions == ["alias.drift_detected", "alias.drift_confirmed"]


def test_revert_puts_mlflow_back_and_a_hand_fix_closes_it(
        services: Services, people: dict[str, Principal], model: str) -> None:
    pr.approve(services, people["ann"], pr.propose(services, people["sam"], model, 2).id)
    client = mlflow_client(services)
    client.set_registered_model_alias(model, "champion", "1")
    client.set_registered_model_alias(model, "challenger", "3")
    found = {d.alias: d for d in check_alias_drift(services, model)}
    assert found["challenger"].recorded_version is None
    assert pr.serving_plan(services.engine, model).blocked == ["1", "3"]

    reverted = resolve_drift(services, people["abe"], found["champion"].id, "revert")
    assert reverted.status == "reverted"
    assert str(client.get_registered_model(model).aliases["champion"]) == "2"
    client.delete_registered_model_alias(model, "challenger")  # fixed by hand in MLflow
    assert check_alias_drift(services, model) == []
    statuses = {d.alias: d.status for d in list_drift(services.engine, model, status=None)}
    assert statuses == {"champion": "reverted", "challenger": "gone"}
    assert pr.serving_plan(services.engine, model) == pr.ServingPlan(
        "2", None, "single", {"champion": 1.0}, False, [])


def test_moved_again_before_the_decision_needs_a_fresh_check(
        services: Services, people: dict[str, Principal], model: str) -> None:
    client = mlflow_client(services)
    client.set_registered_model_alias(model, "champion", "1")
    # Listing the models checks every one of them against MLflow (one MLflow call).
    listed = next(m for m in pr.list_models(services) if m["name"] == model)
    assert listed["blocked"] == ["1"] and listed["mlflow_aliases"] == {"champion": "1"}
    (first,) = check_alias_drift(services, model)
    client.set_registered_model_alias(model, "champion", "2")
    with pytest.raises(Conflict, match="moved again"):
        resolve_drift(services, people["ann"], first.id)
    (second,) = check_alias_drift(services, model)
    assert second.mlflow_version == "2" and second.id != first.id
    resolve_drift(services, people["ann"], second.id)
    assert pr.serving_plan(services.engine, model).champion == "2"


def test_the_always_running_maintenance_finds_a_direct_move(
        services: Services, people: dict[str, Principal], model: str) -> None:
    """Nobody has to ask: `wb jobs maintain` checks every model on each pass."""
    from jobs.maintain import maintain_once

    pr.approve(services, people["ann"], pr.propose(services, people["sam"], model, 1).id)
    maintain_once(services)
    assert open_counts(services.engine).get(model, 0) == 0
    mlflow_client(services).set_registered_model_alias(model, "champion", "2")
    maintain_once(services)
    assert open_counts(services.engine).get(model, 0) == 1
    assert pr.serving_plan(services.engine, model).blocked == ["2"]
