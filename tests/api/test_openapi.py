"""/openapi.json describes every route with real schemas, and the app keeps to it: a
schemathesis run with every check on, with a valid token, against real models."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from flask import Flask
from schemathesis.engine import Status, events, from_schema
from werkzeug.serving import WSGIRequestHandler, make_server

from api.openapi import build_spec, undocumented
from mlwb import promotions as pr
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.settings import Settings
from mlwb.traffic import set_traffic
from mlwb.users import Principal
from tests.factories import make_token, make_user
from tests.promotions.models import Store, register, shared_store, with_store

# Model- and experiment-specific bodies: the input schema is the model's signature (or the
# experiment's parameters), which one generic operation cannot state, so schema-valid bodies
# may still miss the model's columns: 4xx.
MODEL_INPUT = r"/(predict|invocations|infer|explain)$|^/api/jobs$"
SAMPLED_MODEL = "openapi-linear"


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store of this module's own: schemathesis learns names from responses, and models
    other tests registered (with hashes in their own state DBs) would not be servable here."""
    return shared_store(tmp_path_factory.getbasetemp() / "mlflow-openapi")


@pytest.fixture
def settings(settings: Settings, store: Store) -> Settings:
    return with_store(settings, store)


@pytest.fixture
def token(services: Services, store: Store) -> str:
    """An admin's token with every scope, and a model with champion and challenger."""
    make_user(services, "root", Role.admin)
    _, secret = make_token(services, "root", tuple(Scope))
    name = register(services, store, versions=3, name=SAMPLED_MODEL)
    sam = Principal(user_id=900, username="sam", role=Role.scientist)
    ann = Principal(user_id=901, username="ann", role=Role.approver)
    for version, alias in ((1, "champion"), (2, "challenger")):
        pr.approve(services, ann, pr.propose(services, sam, name, version, alias=alias).id)
    set_traffic(services, ann, name, "shadow")
    return secret


def test_every_route_is_documented_with_real_schemas(app: Flask) -> None:
    assert undocumented(app) == set()
    spec = build_spec(app)
    empty = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                if not content.get("schema"):
                    empty.append((method, path, "request", media))
            ok = [s for s in op["responses"] if s.startswith(("2", "3"))]
            if not ok:
                empty.append((method, path, "no success response", ""))
            for status, resp in op["responses"].items():
                for media, content in resp.get("content", {}).items():
                    if not content.get("schema"):
                        empty.append((method, path, status, media))
    assert empty == []


class Quiet(WSGIRequestHandler):
    """A request handler that does not log every request."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The app behind a real HTTP server on a free port (threaded, like gunicorn's threads)."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def run_schemathesis(base_url: str, token: str, max_examples: int,
                     ) -> tuple[list[str], set[str], set[str]]:
    """Every phase and check of schemathesis against the served /openapi.json; returns the
    failures found, the operations the document lists and those that were exercised."""
    resp = requests.get(f"{base_url}/openapi.json", timeout=30,
                        headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    spec = resp.json()
    # No worker runs here: a job submitted with wait=true would hold its request 10 minutes.
    jobs = spec["paths"].get("/api/jobs", {}).get("post")
    if jobs:
        body = jobs["requestBody"]["content"]["application/json"]["schema"]
        body["properties"]["wait"] = {"enum": [False, None]}
    for ops in spec["paths"].values():
        for param in (p for op in ops.values() for p in op.get("parameters", [])):
            if param["name"] == "name" and param["in"] == "path":
                param["schema"] = {**param["schema"], "examples": [SAMPLED_MODEL]}
    config = schemathesis.Config.from_dict({
        "base-url": base_url,
        "headers": {"Authorization": f"Bearer {token}"},
        "generation": {"max-examples": max_examples, "deterministic": True},
        "phases": {"stateful": {"enabled": False}},
        "suppress-health-check": ["all"],
        "operations": [{
            "include-path-regex": MODEL_INPUT,
            "checks": {"positive_data_acceptance": {
                "expected-statuses": ["2xx", "400", "404", "409", "413", "415", "422"]}},
        }],
    })
    schema = schemathesis.openapi.from_dict(spec, config=config)
    listed = {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops}
    failures: list[str] = []
    exercised: set[str] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.recorder.interactions:
            exercised.add(event.label or "")
        if isinstance(event, events.ScenarioFinished) and event.status in (
                Status.FAILURE, Status.ERROR):
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        f = check.failure_info.failure
                        failures.append(f"{event.label}: {check.name}: {f.title}: "
                                        f"{(f.message or '')[:400]}\n"
                                        f"{check.failure_info.code_sample[:600]}")
        elif isinstance(event, events.NonFatalError):
            failures.append(f"{event.label}: error: {event.value!r}"[:800])
        elif isinstance(event, events.FatalError):
            failures.append(f"fatal: {event.exception!r}")
    return sorted(set(failures)), listed, exercised


def test_api_keeps_to_its_description(served: str, token: str, tmp_path: Path) -> None:
    failures, listed, exercised = run_schemathesis(served, token, max_examples=10)
    report = "\n\n".join(failures)
    (tmp_path / "schemathesis-failures.txt").write_text(report)
    assert failures == [], report
    assert len(listed) > 40 and listed <= exercised  # every operation was really called
