"""Roles and scopes: who may do what.

Roles are ordered ``viewer < scientist < approver < admin``; a higher role can do all a
lower one can. Tokens carry scopes instead; a token's effective rights are its scopes, and
never more than its owner's role allows.
"""

from __future__ import annotations

from enum import StrEnum

from mlwb.errors import InputError, PermissionDenied


class Role(StrEnum):
    """A person's role; compare with ``at_least``."""

    viewer = "viewer"
    scientist = "scientist"
    approver = "approver"
    admin = "admin"

    @property
    def rank(self) -> int:
        """Position in the order viewer < scientist < approver < admin."""
        return ROLE_ORDER.index(self)

    def at_least(self, other: Role) -> bool:
        """True if this role includes ``other``'s rights."""
        return self.rank >= other.rank

    @classmethod
    def parse(cls, value: str) -> Role:
        """A role from text, with a message listing the valid ones."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise InputError(
                f"unknown role {value!r}; choose one of {', '.join(r.value for r in cls)}",
                role=value,
            ) from None


ROLE_ORDER = [Role.viewer, Role.scientist, Role.approver, Role.admin]


class Scope(StrEnum):
    """What a token may be used for."""

    read = "read"
    predict = "predict"
    feedback = "feedback"
    events = "events"
    jobs = "jobs"
    promote = "promote"
    admin = "admin"


# The least role a token's owner needs for each scope: a scope never lifts a role.
SCOPE_MIN_ROLE: dict[Scope, Role] = {
    Scope.read: Role.viewer,
    Scope.predict: Role.viewer,
    Scope.feedback: Role.viewer,
    Scope.events: Role.scientist,
    Scope.jobs: Role.scientist,
    Scope.promote: Role.scientist,
    Scope.admin: Role.admin,
}


def parse_scopes(text: str | list[str]) -> list[Scope]:
    """Scopes from ``"predict,feedback"`` or a list; raises InputError naming a bad one."""
    items = text.split(",") if isinstance(text, str) else text
    out: list[Scope] = []
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        try:
            scope = Scope(item)
        except ValueError:
            raise InputError(
                f"unknown scope {item!r}; choose from {', '.join(s.value for s in Scope)}",
                scope=item,
            ) from None
        if scope not in out:
            out.append(scope)
    if not out:
        raise InputError(f"give at least one scope ({', '.join(s.value for s in Scope)})")
    return out


def require_role(actual: Role, needed: Role, action: str) -> None:
    """Raise PermissionDenied unless ``actual`` includes ``needed``."""
    if not actual.at_least(needed):
        raise PermissionDenied(
            f"{action} needs the {needed.value} role or above; you are {actual.value}. "
            "Ask an admin to change your role (`wb users set-role`).",
            needed=needed.value,
            role=actual.value,
        )
