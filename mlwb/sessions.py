"""One sign-in for the whole product: the Flask session cookie, validated anywhere.

The API signs people in with flask-login; the cookie is Flask's signed session. The
workbench (another process, another port on the same host) reads the same cookie and
calls :func:`principal_from_cookie`, so there is one user store and one rule.
flask-login's user id is ``"<id>:<session_epoch>"``: bumping a user's epoch (disable,
password change) ends every session they have, everywhere, at the next request.
"""

from __future__ import annotations

import hashlib

from flask.json.tag import TaggedJSONSerializer
from itsdangerous import BadSignature, URLSafeTimedSerializer

from mlwb.settings import Settings
from mlwb.users import Principal, UserStore


def session_serializer(secret_key: str) -> URLSafeTimedSerializer:
    """The serializer Flask's SecureCookieSessionInterface uses for its session cookie."""
    return URLSafeTimedSerializer(
        secret_key,
        salt="cookie-session",
        serializer=TaggedJSONSerializer(),
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    )


def login_id(user_id: int, epoch: int) -> str:
    """The id flask-login keeps in the session."""
    return f"{user_id}:{epoch}"


def principal_from_login_id(value: str, users: UserStore) -> Principal | None:
    """The active user a session's login id names, if its epoch is still current."""
    try:
        raw_id, raw_epoch = value.split(":", 1)
        user_id, epoch = int(raw_id), int(raw_epoch)
    except (ValueError, AttributeError):
        return None
    user = users.get(user_id)
    if user is None or not user.active or user.session_epoch != epoch:
        return None
    return Principal(user_id=user.id, username=user.username, role=user.role)


def principal_from_cookie(
    cookie: str | None, settings: Settings, users: UserStore
) -> Principal | None:
    """The signed-in person behind a session cookie value, or None."""
    if not cookie:
        return None
    try:
        data = session_serializer(settings.resolved_secret_key()).loads(
            cookie, max_age=settings.session_minutes * 60
        )
    except BadSignature:
        return None
    if not isinstance(data, dict) or "_user_id" not in data:
        return None
    return principal_from_login_id(str(data["_user_id"]), users)
