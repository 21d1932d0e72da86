"""Fixtures for the serving tests: a real MLflow zoo, real users and tokens, promotions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlflow
import pytest
from flask import Flask
from flask.testing import FlaskClient

from mlwb.promotions import approve, propose
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.settings import Settings
from mlwb.users import Principal
from tests.factories import land, make_token, make_user
from tests.serving.models import Zoo, zoo


@pytest.fixture
def models(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    """The session's MLflow store with its logged models (built once)."""
    return zoo(tmp_path_factory.getbasetemp() / "serving-zoo")


@pytest.fixture
def settings(settings: Settings, models: Zoo) -> Settings:
    """The test's settings, with MLflow pointed at the zoo."""
    # Both URIs explicitly: mlflow.set_registry_uri() leaks into os.environ, which Settings
    # reads (MLFLOW_REGISTRY_URI), so an unpinned registry could point anywhere.
    return settings.model_copy(update={"mlflow_tracking_uri": models.uri,
                                       "mlflow_registry_uri": models.uri,
                                       "artifact_root": models.artifact_root})


@dataclass
class World:
    """A served model and the people and tokens a test needs."""

    services: Services
    app: Flask
    client: FlaskClient
    zoo: Zoo
    people: dict[str, Principal]
    headers: dict[str, str]  # viewer token with predict, feedback, read
    scientist: dict[str, str]  # scientist token with predict, read

    def promote(self, name: str, version: str | int, alias: str = "champion") -> None:
        """Move ``alias`` to ``version`` the product's way: proposed, then approved."""
        promo = propose(self.services, self.people["sam"], name, version, alias)
        approve(self.services, self.people["ann"], promo.id)

    def model(self, *kinds: str, record: bool = True) -> str:
        """A fresh model with versions ``kinds``; version 1 is champion."""
        name = self.zoo.register(self.services, *kinds, record=record)
        self.promote(name, 1)
        return name

    def rows(self, n: int = 1, start: int = 0) -> list[dict[str, float]]:
        """Real feature rows as JSON-able records."""
        return self.zoo.X.iloc[start:start + n].to_dict("records")  # type: ignore[return-value]

    def pyfunc(self, name: str, version: str | int = 1) -> Any:
        """``mlflow.pyfunc.load_model`` of a registered version, the reference answer."""
        from tests.serving.models import global_uris

        with global_uris(self.zoo.uri):
            return mlflow.pyfunc.load_model(f"models:/{name}/{version}")

    def land(self) -> None:
        """Land the prediction log (the ingest's job)."""
        land(self.services)

    def reset_rate_limits(self) -> None:
        """Every caller starts a fresh prediction window (what was counted is shipped
        first, so no late count lands in the new one)."""
        from api.serving.shipper import flush_all

        flush_all()
        r = self.services.redis
        keys = r.keys("wb:rl:predict:*")
        if keys:
            r.delete(*keys)
        state = self.app.extensions.get("wb_serving")
        if state is not None:
            state.shipper.forget_counts()
            state.over_until.clear()

    def hits(self) -> dict[str, int]:
        """Prediction hits counted in Redis per caller (after shipping what is counted)."""
        from api.serving.shipper import flush_all

        flush_all()
        r = self.services.redis
        out: dict[str, int] = {}
        for key in r.keys("wb:rl:predict:*"):
            caller = key.decode().split(":")[3]
            out[caller] = out.get(caller, 0) + int(r.get(key) or 0)
        return out


@pytest.fixture
def world(app: Flask, services: Services, models: Zoo) -> World:
    """People (viewer vic, scientist sam, approver ann), tokens, the app's test client."""
    people = {}
    for uname, role in [("vic", Role.viewer), ("sam", Role.scientist), ("ann", Role.approver)]:
        user = make_user(services, uname, role)
        people[uname] = Principal(user_id=user.id, username=uname, role=role)
    _, tok = make_token(services, "vic", (Scope.predict, Scope.feedback, Scope.read))
    _, sci = make_token(services, "sam", (Scope.predict, Scope.read))
    return World(services, app, app.test_client(), models, people,
                 {"Authorization": f"Bearer {tok}"}, {"Authorization": f"Bearer {sci}"})


@pytest.fixture
def predict(world: World) -> Callable[..., object]:
    """``predict(name, body)`` -> the test client's response."""

    def call(name: str, body: object, **kw: object) -> object:
        headers = {**world.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
        return world.client.post(f"/api/models/{name}/predict", json=body, headers=headers,
                                 **kw)

    return call
