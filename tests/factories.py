"""Factories for users and tokens (real rows through the real stores)."""

from __future__ import annotations

from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.users import User, operator

PASSWORD = "correct-horse-battery"
OPERATOR = operator("tests")


def make_user(svc: Services, name: str = "alice", role: Role = Role.scientist,
              password: str = PASSWORD) -> User:
    """An active user with a known password."""
    return svc.users.add(name, password, role, OPERATOR)


def make_token(svc: Services, username: str = "alice",
               scopes: tuple[Scope, ...] = (Scope.read, Scope.events)) -> tuple[str, str]:
    """``(token_id, token)`` for ``username``."""
    return svc.tokens.create(username, "test-token", list(scopes), OPERATOR)


def land(services: Services) -> None:
    """Land every recorded event (what the ingest process does continuously)."""
    from mlwb.ingest import Ingest

    ingest = Ingest(services.redis, services.settings.lake_dir).open()
    try:
        while ingest.step():
            pass
    finally:
        ingest.close()
