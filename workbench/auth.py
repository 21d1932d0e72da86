"""One sign-in: the workbench trusts the API's Flask session cookie, checked by the same
shared function the API uses (:func:`mlwb.sessions.principal_from_cookie`).

The browser sends the cookie to the workbench because cookies are scoped by host, not port.
There is no second user store and no login form here: a signed-out visitor gets a link to
the API's sign-in page, which sends them back to the workbench.
"""

from __future__ import annotations

from urllib.parse import quote

import streamlit as st

from mlwb.services import Services
from mlwb.sessions import principal_from_cookie
from mlwb.settings import Settings
from mlwb.users import Principal

# Session-state key that may hold a session cookie value. streamlit's AppTest cannot send
# cookies, so tests put one here; it is validated exactly like the browser's cookie, so it
# grants nothing a forged value could.
COOKIE_STATE_KEY = "wb_session_cookie"


def login_url(settings: Settings) -> str:
    """The API's sign-in page, returning to the workbench afterwards."""
    return f"{settings.public_api_url}/login?next={quote(settings.public_workbench_url, safe='')}"


def session_cookie(settings: Settings) -> str | None:
    """The session cookie the browser sent with this session (or the test's stand-in)."""
    value = st.context.cookies.get(settings.cookie_name)
    if not isinstance(value, str) or not value:
        value = st.session_state.get(COOKIE_STATE_KEY)
    return value if isinstance(value, str) and value else None


def current_principal(svc: Services) -> Principal | None:
    """The signed-in person, re-checked on every rerun (a disabled user is out at once)."""
    return principal_from_cookie(session_cookie(svc.settings), svc.settings, svc.users)
