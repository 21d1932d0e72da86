"""The exception tree. Every error says what is wrong and how to fix it.

    WorkbenchError                  root; carries ``context`` (ids that locate the problem)
    ├── ConfigError                 settings are missing or unsafe
    ├── InputError                  a caller sent something invalid (HTTP 400/422)
    │   └── NotFound                a named thing does not exist (HTTP 404)
    ├── Conflict                    the thing already exists / already happened (HTTP 409)
    ├── AuthError                   not signed in / bad credentials (HTTP 401)
    │   └── RateLimited             too many attempts (HTTP 429)
    ├── PermissionDenied            signed in, but the role or scope does not allow it (HTTP 403)
    └── StoreError                  the event store or state DB failed (HTTP 503)
"""

from __future__ import annotations

from typing import Any


class WorkbenchError(Exception):
    """Root of every error the product raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def to_dict(self) -> dict[str, Any]:
        """The JSON body an HTTP client sees."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.context:
            body["context"] = {k: v for k, v in self.context.items() if v is not None}
        return body


class ConfigError(WorkbenchError):
    """Settings are missing or unsafe for this environment."""

    code = "config_error"


class InputError(WorkbenchError):
    """The caller sent something invalid."""

    status = 400
    code = "invalid_input"


class Unprocessable(InputError):
    """Well-formed, but the values do not fit (wrong type, out of range)."""

    status = 422
    code = "unprocessable"


class NotFound(InputError):
    """A named thing does not exist."""

    status = 404
    code = "not_found"


class Conflict(WorkbenchError):
    """The thing already exists or already happened."""

    status = 409
    code = "conflict"


class AuthError(WorkbenchError):
    """Not signed in, or the credentials are wrong."""

    status = 401
    code = "unauthorized"


class RateLimited(AuthError):
    """Too many attempts; retry later."""

    status = 429
    code = "rate_limited"


class PermissionDenied(WorkbenchError):
    """Signed in, but the role or scope does not allow this."""

    status = 403
    code = "forbidden"
    audited = False  # set once the denial is in the audit log


class StoreError(WorkbenchError):
    """The event store or the state database could not do its part."""

    status = 503
    code = "store_unavailable"


def reason_of(exc: BaseException) -> str:
    """The first line of an error from code we call (a model, MLflow), for a message: its
    own ``message`` where it has one (MLflow's exceptions do), at most 300 characters."""
    text = str(getattr(exc, "message", None) or exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0][:300]
