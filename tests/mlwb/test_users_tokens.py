"""Accounts, argon2id passwords, hashed scoped tokens, revocation, disabling."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from mlwb.db import tokens as tokens_t
from mlwb.db import users as users_t
from mlwb.errors import Conflict, InputError, PermissionDenied
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.tokens import TokenStore
from mlwb.users import Principal
from tests.factories import OPERATOR, PASSWORD, land, make_token, make_user


def test_passwords_are_argon2id(services: Services) -> None:
    make_user(services)
    with services.engine.connect() as conn:
        stored = conn.execute(sa.select(users_t.c.password_hash)).scalar()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert services.users.authenticate("alice", PASSWORD) is not None
    assert services.users.authenticate("alice", "wrong-password") is None
    assert services.users.authenticate("nobody", PASSWORD) is None


def test_user_rules(services: Services) -> None:
    make_user(services)
    with pytest.raises(Conflict):
        make_user(services)
    with pytest.raises(InputError, match="at least 10"):
        services.users.add("bob", "short", Role.viewer, OPERATOR)
    with pytest.raises(InputError, match="username"):
        services.users.add("no spaces!", PASSWORD, Role.viewer, OPERATOR)
    alice = services.users.require("alice")
    as_alice = Principal(alice.id, alice.username, alice.role)
    with pytest.raises(PermissionDenied, match="admin"):
        services.users.add("bob", PASSWORD, Role.viewer, as_alice)


def test_token_is_stored_only_as_digest_and_authenticates(services: Services) -> None:
    make_user(services)
    token_id, token = make_token(services)
    assert token.startswith("wbt_") and len(token) > 40
    with services.engine.connect() as conn:
        row = conn.execute(sa.select(tokens_t)).first()
    assert token not in str(tuple(row))
    principal = services.tokens.authenticate(token)
    assert principal is not None and principal.token_id == token_id
    assert principal.scopes == frozenset({Scope.read, Scope.events})
    assert services.tokens.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert services.tokens.authenticate("garbage") is None


def test_token_scope_cannot_exceed_role(services: Services) -> None:
    make_user(services, "val", Role.viewer)
    with pytest.raises(PermissionDenied):
        services.tokens.create("val", "t", [Scope.jobs], OPERATOR)


def test_token_scope_is_enforced(services: Services) -> None:
    make_user(services)
    _, token = make_token(services, scopes=(Scope.predict,))
    principal = services.tokens.authenticate(token)
    assert principal is not None
    principal.require(Role.viewer, Scope.predict, "predicting")
    with pytest.raises(PermissionDenied, match="'jobs' scope"):
        principal.require(Role.scientist, Scope.jobs, "launching a job")


def test_revocation_reaches_other_processes_within_seconds(services: Services) -> None:
    """Another worker's TokenStore (its own cache) refuses the token soon after revocation."""
    make_user(services)
    token_id, token = make_token(services)
    other_worker = TokenStore(services.engine, services.sink, services.users)
    assert other_worker.authenticate(token) is not None  # now cached there
    services.tokens.revoke(token_id, OPERATOR)
    deadline = time.monotonic() + 30
    while other_worker.authenticate(token) is not None:
        assert time.monotonic() < deadline, "revocation never reached the other worker"
        time.sleep(0.2)


def test_disabling_a_user_revokes_tokens(services: Services) -> None:
    make_user(services)
    token_id, token = make_token(services)
    services.users.set_active("alice", False, OPERATOR)
    listed = {t.id: t for t in services.tokens.list("alice")}
    assert listed[token_id].revoked_at is not None
    fresh = TokenStore(services.engine, services.sink, services.users)
    assert fresh.authenticate(token) is None
    assert services.users.authenticate("alice", PASSWORD) is None


def test_last_used_is_recorded(services: Services) -> None:
    make_user(services)
    token_id, token = make_token(services)
    services.tokens.authenticate(token)
    assert {t.id: t for t in services.tokens.list()}[token_id].last_used_at is not None


def test_changes_are_audited_without_secrets(services: Services) -> None:
    make_user(services)
    _, token = make_token(services)
    services.users.set_role("alice", Role.approver, OPERATOR)
    land(services)
    rows = services.lake.query("SELECT actor, action, target, before, after FROM audit "
                               "ORDER BY seq")
    actions = [r[1] for r in rows]
    assert actions == ["user.added", "token.created", "user.role_changed"]
    assert rows[2][3] == '{"role":"scientist"}' and rows[2][4] == '{"role":"approver"}'
    assert all(token not in str(r) for r in rows)
    assert rows[0][0] == "cli:tests"
