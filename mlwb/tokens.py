"""API tokens: shown once, stored as a SHA-256 digest under a lookup prefix, scoped, revocable.

A token is ``wbt_<prefix>_<secret>`` with 192 random bits of secret. High-entropy secrets
need no slow hash (unlike passwords), so a lookup is one indexed query and one
constant-time compare. Each process caches a lookup for ``TOKEN_CACHE_SECONDS``: a
revocation takes effect everywhere within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlwb import defaults
from mlwb.audit import audit
from mlwb.db import tokens as tokens_t
from mlwb.db import users as users_t
from mlwb.errors import InputError, NotFound
from mlwb.events import EventSink
from mlwb.roles import SCOPE_MIN_ROLE, Role, Scope, require_role
from mlwb.users import Principal, UserStore

PREFIX = "wbt_"


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never its secret)."""

    id: str
    name: str
    username: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def split_token(token: str) -> str | None:
    """The lookup prefix of a well-formed token, else None."""
    if not token.startswith(PREFIX):
        return None
    parts = token[len(PREFIX):].split("_", 1)
    if len(parts) != 2 or len(parts[0]) != 12 or len(parts[1]) < 32:
        return None
    return parts[0]


class TokenStore:
    """Tokens in the state DB, with a short per-process cache for authentication."""

    def __init__(self, engine: Engine, sink: EventSink, users: UserStore) -> None:
        self.engine = engine
        self.sink = sink
        self.users = users
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._last_used_written: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(
        self, username: str, name: str, scopes: list[Scope], by: Principal
    ) -> tuple[str, str]:
        """Create a token for ``username``; returns ``(token_id, token)`` — shown once."""
        owner = self.users.require(username)
        if by.user_id != owner.id:
            by.require(Role.admin, Scope.admin, "creating a token for another user")
        if not owner.active:
            raise InputError(f"user {username!r} is disabled; enable them first")
        for scope in scopes:
            require_role(owner.role, SCOPE_MIN_ROLE[scope], f"a token with scope {scope.value!r}")
        if not name.strip():
            raise InputError("give the token a name that says what uses it (--name)")
        token_id = secrets.token_hex(6)
        prefix = secrets.token_hex(6)
        token = f"{PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
        with self.engine.begin() as conn:
            conn.execute(sa.insert(tokens_t).values(
                id=token_id, prefix=prefix, digest=digest(token), name=name.strip()[:128],
                user_id=owner.id, scopes=",".join(s.value for s in scopes),
                created_at=datetime.now(UTC),
            ))
        audit(self.sink, by.actor, "token.created", f"token:{token_id}",
              after={"owner": username, "name": name, "scopes": [s.value for s in scopes]})
        return token_id, token

    def list(self, username: str | None = None) -> list[TokenInfo]:
        """Tokens, newest first, optionally of one user."""
        q = sa.select(tokens_t, users_t.c.username).join(users_t)
        if username:
            q = q.where(users_t.c.username == username)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(tokens_t.c.created_at.desc())).all()
        return [TokenInfo(r.id, r.name, r.username, r.scopes.split(","), r.created_at,
                          r.revoked_at, r.last_used_at) for r in rows]

    def revoke(self, token_id: str, by: Principal) -> None:
        """Revoke a token (its owner or an admin); effective everywhere within seconds."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tokens_t).where(tokens_t.c.id == token_id)).first()
        if row is None:
            raise NotFound(f"no token with id {token_id!r}; see `wb tokens list`",
                           token_id=token_id)
        if by.user_id != row.user_id:
            by.require(Role.admin, Scope.admin, "revoking another user's token")
        if row.revoked_at is None:
            with self.engine.begin() as conn:
                conn.execute(sa.update(tokens_t).where(tokens_t.c.id == token_id)
                             .values(revoked_at=datetime.now(UTC)))
        audit(self.sink, by.actor, "token.revoked", f"token:{token_id}",
              before={"revoked": row.revoked_at is not None}, after={"revoked": True})
        with self._lock:
            self._cache.clear()

    def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer token acts as, or None if unknown, revoked or disabled."""
        prefix = split_token(token)
        if prefix is None:
            return None
        key = digest(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < defaults.TOKEN_CACHE_SECONDS:
            principal = hit[1]
        else:
            principal = self._lookup(prefix, key)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (now, principal)
        if principal is not None:
            self._touch(principal.token_id or "", now)
        return principal

    def _lookup(self, prefix: str, key: str) -> Principal | None:
        q = (sa.select(tokens_t, users_t.c.username, users_t.c.role, users_t.c.active)
             .join(users_t).where(tokens_t.c.prefix == prefix))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None or not hmac.compare_digest(row.digest, key):
            return None
        if row.revoked_at is not None or not row.active:
            return None
        return Principal(
            user_id=row.user_id, username=row.username, role=Role(row.role), token_id=row.id,
            scopes=frozenset(Scope(s) for s in row.scopes.split(",") if s),
        )

    def _touch(self, token_id: str, now: float) -> None:
        """Write last-used at most once a minute per token per process."""
        last = self._last_used_written.get(token_id)
        if last is not None and now - last < defaults.TOKEN_LAST_USED_EVERY_SECONDS:
            return
        self._last_used_written[token_id] = now
        cutoff = datetime.fromtimestamp(time.time() - defaults.TOKEN_LAST_USED_EVERY_SECONDS, UTC)
        with self.engine.begin() as conn:
            conn.execute(sa.update(tokens_t).where(
                tokens_t.c.id == token_id,
                sa.or_(tokens_t.c.last_used_at.is_(None), tokens_t.c.last_used_at < cutoff),
            ).values(last_used_at=datetime.now(UTC)))
