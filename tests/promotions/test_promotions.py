"""Promotions: four eyes, roles, rollback, traffic, the serving plan, audit; real MLflow."""

from __future__ import annotations

import mlflow
import pytest

from mlwb import promotions as pr
from mlwb.errors import Conflict, InputError, NotFound, PermissionDenied
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.traffic import set_traffic
from mlwb.users import Principal
from tests.factories import land


def mlflow_aliases(services: Services, model: str) -> dict[str, str]:
    client = mlflow.MlflowClient(tracking_uri=services.settings.tracking_uri)
    return {a: str(v) for a, v in client.get_registered_model(model).aliases.items()}


def promote(services: Services, people: dict[str, Principal], model: str, version: int,
            alias: str = "champion") -> pr.Promotion:
    proposal = pr.propose(services, people["sam"], model, version, alias=alias)
    return pr.approve(services, people["ann"], proposal.id)


def test_four_eyes_and_roles(services: Services, people: dict[str, Principal],
                             model: str) -> None:
    with pytest.raises(PermissionDenied, match="scientist"):
        pr.propose(services, people["vic"], model, 1)
    proposal = pr.propose(services, people["ann"], model, 2, note="better recall")
    assert proposal.status == "proposed" and proposal.version == "2"
    with pytest.raises(PermissionDenied, match="four eyes"):
        pr.approve(services, people["ann"], proposal.id)
    with pytest.raises(PermissionDenied, match="approver"):
        pr.approve(services, people["sam"], proposal.id)
    # A token of the proposer is the same pair of eyes as their session.
    ann_token = Principal(people["ann"].user_id, "ann", Role.approver, token_id="t1",
                          scopes=frozenset({Scope.promote}))
    with pytest.raises(PermissionDenied, match="four eyes"):
        pr.approve(services, ann_token, proposal.id)
    # An approver's token without the promote scope may not approve either.
    abe_read = Principal(people["abe"].user_id, "abe", Role.approver, token_id="t2",
                         scopes=frozenset({Scope.read}))
    with pytest.raises(PermissionDenied, match="promote"):
        pr.approve(services, abe_read, proposal.id)
    assert pr.serving_plan(services.engine, model).champion is None

    done = pr.approve(services, people["abe"], proposal.id)
    assert done.status == "approved" and done.approved_by == people["abe"].actor
    assert mlflow_aliases(services, model) == {"champion": "2"}
    plan = pr.serving_plan(services.engine, model)
    assert (plan.champion, plan.challenger, plan.mode, plan.blocked) == ("2", None, "single", [])
    with pytest.raises(Conflict, match="already approved"):
        pr.approve(services, people["ada"], proposal.id)


def test_bad_input_says_what_to_fix(services: Services, people: dict[str, Principal],
                                    model: str) -> None:
    with pytest.raises(NotFound, match="no version 9"):
        pr.propose(services, people["sam"], model, 9)
    with pytest.raises(NotFound, match="no registered model"):
        pr.propose(services, people["sam"], "no-such-model", 1)
    with pytest.raises(InputError, match="positive integer"):
        pr.propose(services, people["sam"], model, "two")
    with pytest.raises(InputError, match="alias"):
        pr.propose(services, people["sam"], model, 1, alias="Latest!")
    with pytest.raises(NotFound, match="no promotion 999"):
        pr.approve(services, people["ann"], 999)


def test_newer_proposal_supersedes_and_reject(services: Services,
                                              people: dict[str, Principal], model: str) -> None:
    first = pr.propose(services, people["sam"], model, 1)
    second = pr.propose(services, people["sam"], model, 2)
    assert pr.get_promotion(services.engine, first.id).status == "superseded"
    with pytest.raises(Conflict, match="superseded"):
        pr.approve(services, people["ann"], first.id)
    rejected = pr.reject(services, people["ann"], second.id, note="not yet")
    assert rejected.status == "rejected"
    assert pr.serving_plan(services.engine, model).champion is None
    assert "champion" not in mlflow_aliases(services, model)


def test_rollback_walks_back_the_holders(services: Services, people: dict[str, Principal],
                                         model: str) -> None:
    for version in (1, 2, 3):
        promote(services, people, model, version)
    with pytest.raises(Conflict, match="already holds"):
        pr.propose(services, people["sam"], model, 3)
    with pytest.raises(PermissionDenied):
        pr.rollback(services, people["sam"], model, "champion")
    move = pr.rollback(services, people["ann"], model, "champion", reason="bad latency")
    assert (move.version, move.previous_version, move.reason) == ("2", "3", "rollback")
    assert pr.serving_plan(services.engine, model).champion == "2"
    assert mlflow_aliases(services, model)["champion"] == "2"
    assert pr.rollback(services, people["abe"], model, "champion").version == "1"
    with pytest.raises(Conflict, match="nothing to roll back to"):
        pr.rollback(services, people["ann"], model, "champion")
    hist = pr.history(services, model)
    assert [m.version for m in hist.moves] == ["1", "2", "3", "2", "1"]
    assert [m.reason for m in hist.moves][:2] == ["rollback", "rollback"]
    assert hist.aliases == {"champion": "1"}
    assert len(hist.promotions) == 3


def test_traffic_policy_and_serving_plan(services: Services, people: dict[str, Principal],
                                         model: str) -> None:
    promote(services, people, model, 1)
    with pytest.raises(Conflict, match="no challenger"):
        set_traffic(services, people["ann"], model, "split",
                    {"champion": 0.9, "challenger": 0.1})
    promote(services, people, model, 2, alias="challenger")
    with pytest.raises(PermissionDenied):
        set_traffic(services, people["sam"], model, "shadow")
    with pytest.raises(InputError, match="unknown traffic mode"):
        set_traffic(services, people["ann"], model, "canary")
    with pytest.raises(InputError, match="weights"):
        set_traffic(services, people["ann"], model, "split")
    with pytest.raises(InputError, match="unknown arm"):
        set_traffic(services, people["ann"], model, "split", {"champion": 1, "blue": 1})
    with pytest.raises(InputError, match="both weights of at least"):
        set_traffic(services, people["ann"], model, "split", {"champion": 1})
    with pytest.raises(InputError, match="both weights of at least"):  # 0 once normalised
        set_traffic(services, people["ann"], model, "split",
                    {"champion": 1e-320, "challenger": 1e6})
    policy = set_traffic(services, people["ann"], model, "split",
                         {"champion": 3, "challenger": 1}, sticky=True)
    assert policy.weights == {"champion": 0.75, "challenger": 0.25}
    plan = pr.serving_plan(services.engine, model)
    assert plan == pr.ServingPlan("1", "2", "split", {"champion": 0.75, "challenger": 0.25},
                                  True, [])
    set_traffic(services, people["ann"], model, "shadow")
    plan = pr.serving_plan(services.engine, model)
    assert (plan.mode, plan.weights, plan.sticky) == ("shadow", {"champion": 1.0}, False)
    # Rolling the challenger back to nothing leaves the champion alone serving.
    with pytest.raises(Conflict):
        pr.rollback(services, people["ann"], model, "challenger")


def test_every_step_is_audited(services: Services, people: dict[str, Principal],
                               model: str) -> None:
    promote(services, people, model, 1)
    promote(services, people, model, 2)
    promote(services, people, model, 3, alias="challenger")
    set_traffic(services, people["ann"], model, "shadow")
    pr.rollback(services, people["abe"], model)
    land(services)
    rows = services.lake.query(
        "SELECT actor, action, target FROM audit WHERE action NOT LIKE 'user.%' ORDER BY seq")
    actions = [r[1] for r in rows]
    assert actions == ["promotion.proposed", "promotion.approved"] * 3 + [
        "traffic.set", "alias.rolled_back"]
    assert rows[1][0] == people["ann"].actor and rows[1][2] == f"model:{model}@champion"
    assert rows[-1][0] == people["abe"].actor
