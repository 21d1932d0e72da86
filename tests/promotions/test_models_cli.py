"""`wb models`: the operator proposes, approves, rolls back and sets traffic from the shell."""

from __future__ import annotations

import json
from collections.abc import Iterator

import mlflow
import pytest

from mlwb import promotions as pr
from mlwb.services import Services
from mlwb.settings import Settings
from mlwb.users import Principal
from tests.factories import cli_invoker


@pytest.fixture
def run(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    yield from cli_invoker(settings, monkeypatch)


def test_cli_promotion_cycle(run, services: Services, people: dict[str, Principal],  # type: ignore[no-untyped-def]
                             model: str) -> None:
    proposed = run("models", "promote", model, "2", "--note", "fresh data")
    assert proposed.exit_code == 0 and "wb models approve" in proposed.output
    own_id = proposed.output.split("#")[1].split(":")[0]
    own = run("models", "approve", own_id)
    assert own.exit_code == 2 and "Error:" in own.output and "four eyes" in own.output
    pr.approve(services, people["ann"], int(own_id))

    theirs = pr.propose(services, people["sam"], model, 3)
    assert run("models", "approve", str(theirs.id)).exit_code == 0
    listed = run("models", "list", "--json").output.splitlines()
    row = next(json.loads(line) for line in listed if json.loads(line)["name"] == model)
    assert row["aliases"] == row["mlflow_aliases"] == "champion=v3"

    moved = run("models", "rollback", model, "--from-version", "2")
    assert moved.exit_code == 2 and "held by v3, not v2" in moved.output
    back = run("models", "rollback", model, "--reason", "regression", "--from-version", "3")
    assert back.exit_code == 0 and "v3 -> v2" in back.output
    assert run("models", "traffic", model, "--mode", "split", "--champion", "1").exit_code == 2
    shown = json.loads(run("models", "traffic", model, "--json").output)
    assert shown["champion"] == "2" and shown["mode"] == "single"
    hist = json.loads(run("models", "history", model, "--json").output)
    assert [m["version"] for m in hist["moves"]] == ["2", "3", "2"]
    assert "rollback" in run("models", "history", model).output

    mlflow.MlflowClient(tracking_uri=services.settings.tracking_uri).set_registered_model_alias(
        model, "champion", "1")
    watched = run("models", "watch-drift", "--once")
    assert watched.exit_code == 0 and f"{model} champion is v1 in MLflow, v2" in watched.output
    found = run("models", "drift", model, "--json")
    (item,) = [json.loads(line) for line in found.output.splitlines()]
    assert item["mlflow_version"] == "1"
    assert run("models", "drift", model, "--revert", str(item["id"])).exit_code == 0
    assert run("models", "promote", model, "9").output.startswith("Error: model")

    shown = run("models", "explain", model, "--row", '{"a": 1, "b": 2, "c": 3, "d": 4}')
    assert shown.exit_code == 0 and "prediction =" in shown.output and "FEATURE" in shown.output
    bad = run("models", "explain", model, "--row", "{a: 1}")
    assert bad.exit_code == 2 and "not JSON" in bad.output
