"""Fixtures for promotions, traffic, drift and explain: a shared real MLflow store, people."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.settings import Settings
from mlwb.users import Principal
from tests.factories import make_token, make_user
from tests.promotions.models import Store, register, shared_store, with_store


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The session's MLflow store with its logged models (built once)."""
    return shared_store(tmp_path_factory.getbasetemp() / "mlflow-shared")


@pytest.fixture
def settings(settings: Settings, store: Store) -> Settings:
    """The test's settings, with MLflow pointed at the shared store."""
    return with_store(settings, store)


@pytest.fixture
def model(services: Services, store: Store) -> str:
    """A fresh registered linear model with versions 1, 2, 3."""
    return register(services, store)


PEOPLE = [("vic", Role.viewer), ("sam", Role.scientist), ("ann", Role.approver),
          ("abe", Role.approver), ("ada", Role.admin)]


@pytest.fixture
def people() -> dict[str, Principal]:
    """One principal per role, as a signed-in person's session carries it."""
    return {name: Principal(user_id=i, username=name, role=role)
            for i, (name, role) in enumerate(PEOPLE, start=101)}


@pytest.fixture
def bearer(services: Services) -> Callable[..., dict[str, str]]:
    """``bearer("sam", Scope.promote, ...)`` -> Authorization header of a real user's token."""
    made: set[str] = set()

    def make(username: str, *scopes: Scope) -> dict[str, str]:
        if username not in made:
            make_user(services, username, dict(PEOPLE)[username])
            made.add(username)
        _, token = make_token(services, username, scopes or (Scope.read, Scope.promote))
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def client(app: Flask):  # type: ignore[no-untyped-def]
    """A test client of the real app."""
    return app.test_client()
