"""People: accounts, roles, passwords (argon2id), and the Principal every action runs as."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine

from mlwb.audit import audit
from mlwb.db import tokens as tokens_t
from mlwb.db import users as users_t
from mlwb.errors import Conflict, InputError, NotFound, PermissionDenied
from mlwb.events import EventSink
from mlwb.roles import SCOPE_MIN_ROLE, Role, Scope, require_role

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("timing-equaliser")
USERNAME_RE = re.compile(r"^[a-zA-Z0-9_.@-]{2,64}\Z")
MIN_PASSWORD = 10


@dataclass(frozen=True)
class User:
    """An account as stored (without its password hash)."""

    id: int
    username: str
    role: Role
    active: bool
    session_epoch: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> User:
        """Build from a users-table row."""
        return cls(row.id, row.username, Role(row.role), bool(row.active), row.session_epoch,
                   row.created_at)


@dataclass(frozen=True)
class Principal:
    """Who is acting: a signed-in person, or a token acting for its owner within its scopes."""

    user_id: int
    username: str
    role: Role
    token_id: str | None = None
    scopes: frozenset[Scope] | None = None

    @property
    def actor(self) -> str:
        """The audit log's ``who``: a user or token id, never a secret."""
        if self.token_id:
            return f"token:{self.token_id}:{self.username}"
        if self.user_id == 0:
            return self.username  # the operator's CLI or the system itself, e.g. "cli:root"
        return f"user:{self.user_id}:{self.username}"

    def may(self, role: Role, scope: Scope) -> bool:
        """Whether :meth:`require` would let this principal through (no error built)."""
        return self._has_scope(scope) and self.role.at_least(_needed(role, scope))

    def require(self, role: Role, scope: Scope, action: str) -> None:
        """Raise PermissionDenied unless this principal may do ``action``."""
        if not self._has_scope(scope):
            raise PermissionDenied(
                f"{action} needs a token with the {scope.value!r} scope; this token has "
                f"{', '.join(sorted(s.value for s in self.scopes or ()))}. Create one with "
                f"`wb tokens create --scopes {scope.value}`.",
                scope=scope.value,
                token_id=self.token_id,
            )
        require_role(self.role, _needed(role, scope), action)

    def _has_scope(self, scope: Scope) -> bool:
        return self.scopes is None or scope in self.scopes or Scope.admin in self.scopes


def _needed(role: Role, scope: Scope) -> Role:
    """The role an action needs: its own, or its scope's minimum if that is higher."""
    return max(role, SCOPE_MIN_ROLE[scope], key=lambda r: r.rank)


SYSTEM = Principal(user_id=0, username="system", role=Role.admin)


def operator(name: str) -> Principal:
    """The person at the server's shell running ``wb``: full rights, audited as ``cli:NAME``."""
    return Principal(user_id=0, username=f"cli:{name}", role=Role.admin)


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password must be at least {MIN_PASSWORD} characters long")


class UserStore:
    """Accounts in the state DB; every change is audited."""

    def __init__(self, engine: Engine, sink: EventSink) -> None:
        self.engine = engine
        self.sink = sink

    def get(self, user_id: int) -> User | None:
        """A user by id."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users_t).where(users_t.c.id == user_id)).first()
        return User.from_row(row) if row else None

    def by_name(self, username: str) -> User | None:
        """A user by name."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(users_t).where(users_t.c.username == username)
            ).first()
        return User.from_row(row) if row else None

    def require(self, username: str) -> User:
        """A user by name, or NotFound with a hint."""
        user = self.by_name(username)
        if user is None:
            raise NotFound(f"no user named {username!r}; see `wb users list`", username=username)
        return user

    def list(self) -> list[User]:
        """Every user, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users_t).order_by(users_t.c.username)).all()
        return [User.from_row(r) for r in rows]

    def add(self, username: str, password: str, role: Role, by: Principal) -> User:
        """Create an account (admin only)."""
        by.require(Role.admin, Scope.admin, "adding a user")
        if not USERNAME_RE.match(username):
            raise InputError(
                "a username is 2-64 characters of letters, digits, _ . @ -", username=username
            )
        _check_password(password)
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(users_t).values(
                    username=username, password_hash=hash_password(password), role=role.value,
                    active=True, session_epoch=0, created_at=now,
                ))
        except sa.exc.IntegrityError:
            raise Conflict(f"a user named {username!r} already exists", username=username) from None
        user = self.require(username)
        audit(self.sink, by.actor, "user.added", f"user:{user.id}:{username}",
              after={"username": username, "role": role.value})
        return user

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user with these credentials, or None (same work either way)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(users_t).where(users_t.c.username == username)
            ).first()
        stored = row.password_hash if row is not None else _DUMMY_HASH
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or not row.active:
            return None
        if _hasher.check_needs_rehash(stored):
            with self.engine.begin() as conn:
                conn.execute(sa.update(users_t).where(users_t.c.id == row.id)
                             .values(password_hash=hash_password(password)))
        return User.from_row(row)

    def set_role(self, username: str, role: Role, by: Principal) -> User:
        """Change a user's role (admin only)."""
        by.require(Role.admin, Scope.admin, "changing a role")
        user = self.require(username)
        with self.engine.begin() as conn:
            conn.execute(sa.update(users_t).where(users_t.c.id == user.id).values(role=role.value))
        audit(self.sink, by.actor, "user.role_changed", f"user:{user.id}:{username}",
              before={"role": user.role.value}, after={"role": role.value})
        return self.require(username)

    def set_active(self, username: str, active: bool, by: Principal) -> User:
        """Disable (ending every session and token) or re-enable a user (admin only)."""
        by.require(Role.admin, Scope.admin, "disabling a user")
        user = self.require(username)
        if by.user_id == user.id and not active:
            raise InputError("you cannot disable yourself; ask another admin")
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(sa.update(users_t).where(users_t.c.id == user.id).values(
                active=active, session_epoch=users_t.c.session_epoch + 1))
            if not active:
                conn.execute(sa.update(tokens_t)
                             .where(tokens_t.c.user_id == user.id, tokens_t.c.revoked_at.is_(None))
                             .values(revoked_at=now))
        audit(self.sink, by.actor, "user.disabled" if not active else "user.enabled",
              f"user:{user.id}:{username}", before={"active": user.active},
              after={"active": active})
        return self.require(username)

    def set_password(self, username: str, password: str, by: Principal) -> None:
        """Set a new password and end the user's sessions (admin, or the user themself)."""
        user = self.require(username)
        if by.user_id != user.id:
            by.require(Role.admin, Scope.admin, "setting another user's password")
        _check_password(password)
        with self.engine.begin() as conn:
            conn.execute(sa.update(users_t).where(users_t.c.id == user.id).values(
                password_hash=hash_password(password),
                session_epoch=users_t.c.session_epoch + 1))
        audit(self.sink, by.actor, "user.password_changed", f"user:{user.id}:{username}")
