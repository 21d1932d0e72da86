"""Flask's signed-cookie sessions, skipped for requests that carry no session cookie.

Tools call the API with bearer tokens and no cookie. Flask would still build a signing
serializer to open an empty session and walk the cookie settings to save it; for a request
without the cookie whose session nobody filled, this interface does neither. A request with
the cookie, or one that signs someone in, takes Flask's own path unchanged.
"""

from __future__ import annotations

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin


class LeanSessionInterface(SecureCookieSessionInterface):
    """``SecureCookieSessionInterface`` without work for cookie-less requests."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """An empty session when the request has no session cookie, else Flask's."""
        if app.secret_key and request.cookies.get(self.get_cookie_name(app)) is None:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Nothing to write for a session that is empty and unchanged, else Flask's."""
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)
