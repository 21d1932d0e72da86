"""Sign-in for people (flask-login sessions) and tools (bearer tokens), and the role guard."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template_string,
    request,
    session,
)
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFProtect, generate_csrf

from mlwb import defaults
from mlwb.audit import audit
from mlwb.errors import AuthError, InputError, PermissionDenied
from mlwb.ratelimit import FixedWindow
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.sessions import login_id, principal_from_login_id
from mlwb.users import Principal

login_manager = LoginManager()
csrf = CSRFProtect()
bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])


class SessionUser(UserMixin):
    """flask-login's view of a signed-in person."""

    def __init__(self, principal: Principal, epoch: int) -> None:
        self.principal = principal
        self.epoch = epoch

    def get_id(self) -> str:
        """``"<id>:<epoch>"``: a bumped epoch ends the session."""
        return login_id(self.principal.user_id, self.epoch)


def services() -> Services:
    """The app's shared services."""
    return current_app.extensions["wb"]  # type: ignore[no-any-return]


@login_manager.user_loader
def _load_user(value: str) -> SessionUser | None:
    principal = principal_from_login_id(value, services().users)
    if principal is None:
        return None
    return SessionUser(principal, int(value.split(":", 1)[1]))


@login_manager.unauthorized_handler
def _unauthorized() -> Response:
    raise AuthError("sign in first (/login) or send `Authorization: Bearer <token>`")


def client_ip() -> str:
    """The caller's address (the first proxy hop is trusted via ProxyFix in production)."""
    return request.remote_addr or "?"


def current_principal() -> Principal | None:
    """The caller: a bearer token's principal, else the signed-in person, else None."""
    if "principal" in g:
        return g.principal  # type: ignore[no-any-return]
    header = request.headers.get("Authorization", "")
    principal: Principal | None = None
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError("the Authorization header must be `Bearer <token>`")
        principal = services().tokens.authenticate(value.strip())
        if principal is None:
            # Audited, but at most DENIED_AUDITS_PER_MINUTE per address: a flood of bad
            # tokens must not flood the audit log.
            limiter = FixedWindow(services().redis, "denied-audit",
                                  defaults.DENIED_AUDITS_PER_MINUTE, 60)
            if limiter.hit(client_ip()) <= defaults.DENIED_AUDITS_PER_MINUTE:
                audit(services().sink, "anonymous", "auth.token_denied", request.path,
                      after={"reason": "unknown, revoked or malformed token"}, ip=client_ip())
            raise AuthError("the token is unknown, revoked, or its owner is disabled; "
                            "create a new one with `wb tokens create`")
    elif current_user.is_authenticated:
        principal = current_user.principal
    g.principal = principal
    return principal


def authorize(role: Role, scope: Scope, action: str) -> Principal:
    """The caller, if allowed to do ``action``; raises 401/403 (audited) otherwise."""
    principal = current_principal()
    if principal is None:
        raise AuthError(f"{action} needs you to sign in (/login) or send "
                        "`Authorization: Bearer <token>`")
    try:
        principal.require(role, scope, action)
    except PermissionDenied as exc:
        audit(services().sink, principal.actor, "auth.denied", request.path,
              after={"needed_role": role.value, "needed_scope": scope.value}, ip=client_ip())
        exc.audited = True  # the error handler audits the denials raised deeper down
        raise
    return principal


def audit_denial(exc: PermissionDenied) -> None:
    """Audit a 403 raised inside a service function (self-approval, rejecting someone
    else's proposal as a scientist): every denial is in the audit log, not only the
    decorator's."""
    if getattr(exc, "audited", False):
        return
    principal: Principal | None = g.get("principal")
    audit(services().sink, principal.actor if principal else "anonymous", "auth.denied",
          request.path, after={"reason": exc.message}, ip=client_ip())
    exc.audited = True


def requires(role: Role, scope: Scope, action: str) -> Callable[[F], F]:
    """Decorator: the view runs only for a caller with ``role`` (people) / ``scope`` (tokens)."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            authorize(role, scope, action)
            return view(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def _csrf_guard() -> None:
    """CSRF check on state-changing requests a cross-site page could forge.

    A cross-site form can send form-encoded or text bodies, never ``application/json``
    (that needs a CORS preflight, which this API never grants), and bearer-token calls carry
    no ambient credentials; those two need no token. Unknown routes fall through to 404/405.
    """
    if request.routing_exception is not None:
        return
    # Without a session cookie there is no ambient credential to abuse: the view answers 401.
    # Sign-in keeps its check (a forged sign-in would put a victim in the attacker's account).
    if request.endpoint != "auth.login" and request.cookies.get(
            current_app.config["SESSION_COOKIE_NAME"]) is None:
        return
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and not request.headers.get(
        "Authorization"
    ) and not request.is_json:
        csrf.protect()


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · ml-workbench</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;background:#f5f6f8;display:flex;justify-content:center;
      align-items:center;height:100vh;margin:0}
 form{background:#fff;padding:2rem 2.5rem;border-radius:10px;box-shadow:0 2px 12px #0002;
      width:320px}
 h1{font-size:1.3rem;margin:0 0 1.2rem} label{display:block;margin:.7rem 0 .2rem;
      font-size:.9rem}
 input{width:100%;padding:.5rem;box-sizing:border-box;border:1px solid #ccd;border-radius:6px}
 button{margin-top:1.2rem;width:100%;padding:.6rem;border:0;border-radius:6px;
      background:#ff4b4b;color:#fff;font-size:1rem;cursor:pointer}
 .err{color:#b00020;font-size:.9rem;margin-top:.8rem}
</style></head><body>
<form method="post" action="/login">
 <h1>ml-workbench</h1>
 <input type="hidden" name="csrf_token" value="{{ csrf }}">
 <input type="hidden" name="next" value="{{ next }}">
 <label for="username">Username</label>
 <input id="username" name="username" autocomplete="username" required autofocus>
 <label for="password">Password</label>
 <input id="password" name="password" type="password" autocomplete="current-password" required>
 <button type="submit">Sign in</button>
 {% if error %}<div class="err" role="alert">{{ error }}</div>{% endif %}
</form></body></html>"""


def _safe_next(target: str | None) -> str:
    """Only redirect to this API or the configured workbench (no open redirect)."""
    settings = services().settings
    if not target:
        return settings.public_workbench_url
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return "/"  # browsers read "/\\evil.com" as "//evil.com"
    parsed = urlparse(target)
    if not parsed.netloc and target.startswith("/") and not target.startswith("//"):
        return target
    allowed = {urlparse(settings.public_workbench_url).netloc, urlparse(
        settings.public_api_url).netloc}
    return target if parsed.netloc in allowed and parsed.scheme in ("http", "https") else "/"


@bp.get("/login")
def login_form() -> Response:
    """The sign-in page."""
    html = render_template_string(LOGIN_PAGE, csrf=generate_csrf(),
                                  next=request.args.get("next", ""), error=None)
    return make_response(html)


@bp.post("/login")
def login() -> Response:
    """Sign in with a username and password (form or JSON); rate-limited across workers."""
    wants_json = request.is_json
    data: Any = request.get_json(silent=True) if wants_json else request.form
    if data is None or not hasattr(data, "get"):
        raise InputError("send username and password as a JSON object or a form")
    username = str(data.get("username", "")).strip()[:64]
    password = str(data.get("password", ""))
    svc = services()
    ip = client_ip()
    per_user = FixedWindow(svc.redis, "login", defaults.LOGIN_MAX_FAILURES,
                           defaults.LOGIN_WINDOW_SECONDS)
    per_ip = FixedWindow(svc.redis, "login-ip", defaults.LOGIN_MAX_FAILURES_PER_ADDRESS,
                         defaults.LOGIN_WINDOW_SECONDS)
    user_key = f"{ip}|{username.lower()}"
    # Count the attempt before checking it: a burst of parallel guesses cannot all slip in
    # under the limit. A successful sign-in clears the per-user count.
    if (per_user.hit(user_key) > defaults.LOGIN_MAX_FAILURES
            or per_ip.hit(ip) > defaults.LOGIN_MAX_FAILURES_PER_ADDRESS):
        audit(svc.sink, f"anonymous:{username}", "auth.login_throttled", None, ip=ip)
        return _login_failed(wants_json, 429, "too many failed sign-ins; wait a few minutes "
                             "and try again")
    user = svc.users.authenticate(username, password) if username and password else None
    if user is None:
        audit(svc.sink, f"anonymous:{username}", "auth.login_failed", None, ip=ip)
        return _login_failed(wants_json, 401, "invalid username or password")
    per_user.reset(user_key)
    session.clear()  # rotate: nothing from before sign-in survives it
    principal = Principal(user_id=user.id, username=user.username, role=user.role)
    login_user(SessionUser(principal, user.session_epoch))
    session.permanent = True
    audit(svc.sink, principal.actor, "auth.login", None, ip=ip)
    if wants_json:
        return jsonify({"username": user.username, "role": user.role.value})
    return redirect(_safe_next(str(data.get("next", "")) or None))  # type: ignore[return-value,unused-ignore]


def _login_failed(wants_json: bool, status: int, message: str) -> Response:
    if wants_json:
        resp = jsonify({"error": "login_failed", "message": message})
    else:
        resp = make_response(render_template_string(
            LOGIN_PAGE, csrf=generate_csrf(), next=request.form.get("next", ""), error=message))
    resp.status_code = status
    return resp


LOGOUT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign out · ml-workbench</title></head>
<body style="font-family:system-ui,sans-serif;display:flex;justify-content:center;
 align-items:center;height:100vh;margin:0;background:#f5f6f8">
<form method="post" action="/logout">
 <input type="hidden" name="csrf_token" value="{{ csrf }}">
 <button type="submit" style="padding:.6rem 1.4rem;border:0;border-radius:6px;
  background:#ff4b4b;color:#fff;font-size:1rem;cursor:pointer">Sign out</button>
</form></body></html>"""


@bp.get("/logout")
def logout_form() -> Response:
    """A page whose button signs out (sign-out is a CSRF-protected POST)."""
    return make_response(render_template_string(LOGOUT_PAGE, csrf=generate_csrf()))


@bp.post("/logout")
def logout() -> Response:
    """End the session."""
    principal = current_principal()
    if principal is not None and principal.token_id is None:
        audit(services().sink, principal.actor, "auth.logout", None, ip=client_ip())
    logout_user()
    session.clear()
    if request.is_json:
        return jsonify({"signed_out": True})
    return redirect("/login")  # type: ignore[return-value]


@bp.get("/api/me")
@requires(Role.viewer, Scope.read, "reading your identity")
def me() -> Response:
    """Who the caller is (user, role, token and scopes)."""
    p: Principal = g.principal
    return jsonify({
        "username": p.username, "role": p.role.value, "token_id": p.token_id,
        "scopes": sorted(s.value for s in p.scopes) if p.scopes is not None else None,
    })


@bp.get("/api/csrf")
def csrf_token() -> Response:
    """A CSRF token for browser clients that post JSON with a session cookie."""
    return jsonify({"csrf_token": generate_csrf()})


def init_auth(app: Flask) -> None:
    """Bind flask-login and CSRF to ``app``."""
    login_manager.init_app(app)
    login_manager.session_protection = "basic"
    csrf.init_app(app)
    app.before_request(_csrf_guard)
    app.register_blueprint(bp)
