"""Sign-in: sessions, CSRF, rate limits across workers, tokens, roles, JSON errors."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.sessions import principal_from_cookie
from mlwb.settings import Settings
from tests.factories import OPERATOR, PASSWORD, land, make_token, make_user


def csrf_of(client: FlaskClient) -> str:
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def sign_in(client: FlaskClient, username: str = "alice", password: str = PASSWORD) -> int:
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_of(client)}).status_code


def test_login_sets_a_hardened_rotated_session(app: Flask, services: Services) -> None:
    make_user(services)
    client = app.test_client()
    before = csrf_of(client)
    pre_cookie = client.get_cookie("wb_session")
    resp = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                       "csrf_token": before})
    assert resp.status_code == 302
    header = resp.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" in header
    cookie = client.get_cookie("wb_session")
    assert cookie is not None and (pre_cookie is None or cookie.value != pre_cookie.value)
    assert client.get("/api/me").get_json()["username"] == "alice"
    # The workbench validates the same cookie with the same shared function.
    principal = principal_from_cookie(cookie.value, services.settings, services.users)
    assert principal is not None and principal.role == Role.scientist


def test_login_failures_are_generic_and_audited(app: Flask, services: Services) -> None:
    make_user(services)
    client = app.test_client()
    wrong_pw = client.post("/login", json={"username": "alice", "password": "nope-nope-nope"})
    no_user = client.post("/login", json={"username": "ghost", "password": "nope-nope-nope"})
    assert wrong_pw.status_code == no_user.status_code == 401
    assert wrong_pw.get_json()["message"] == no_user.get_json()["message"]
    land(services)
    actions = [r[0] for r in services.lake.query("SELECT action FROM audit ORDER BY seq")]
    assert actions.count("auth.login_failed") == 2


def test_form_login_needs_csrf(app: Flask, services: Services) -> None:
    make_user(services)
    resp = app.test_client().post("/login", data={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "csrf_failed"


def test_login_rate_limit_is_shared_by_workers(settings: Settings, services: Services) -> None:
    """Two app instances (two gunicorn workers) share one Redis-backed counter."""
    make_user(services)
    worker_a = create_app(settings, services).test_client()
    worker_b = create_app(settings).test_client()
    codes = []
    for i in range(6):
        client = worker_a if i % 2 else worker_b
        codes.append(client.post("/login", json={"username": "alice",
                                                 "password": "wrong-password"}).status_code)
    assert codes[:5] == [401] * 5 and codes[5] == 429
    # Even the right password is refused while throttled.
    assert worker_a.post("/login", json={"username": "alice",
                                         "password": PASSWORD}).status_code == 429


def test_disabling_a_user_ends_their_session(app: Flask, services: Services) -> None:
    make_user(services)
    client = app.test_client()
    assert sign_in(client) == 302
    assert client.get("/api/me").status_code == 200
    services.users.set_active("alice", False, OPERATOR)
    resp = client.get("/api/me")
    assert resp.status_code == 401
    assert "sign in" in resp.get_json()["message"]


def test_session_form_post_needs_csrf(app: Flask, services: Services) -> None:
    """A cross-site form could send this post with the cookie; without the token it fails."""
    make_user(services)
    client = app.test_client()
    sign_in(client)
    forged = client.post("/logout", data={"x": "1"})
    assert forged.status_code == 400 and forged.get_json()["error"] == "csrf_failed"
    assert client.get("/api/me").status_code == 200
    ok = client.post("/logout", data={"csrf_token": csrf_of(client)})
    assert ok.status_code == 302
    assert client.get("/api/me").status_code == 401


def test_tokens_scopes_and_roles(app: Flask, services: Services) -> None:
    make_user(services)
    make_user(services, "val", Role.viewer)
    _, events_token = make_token(services)
    _, read_only = make_token(services, "val", (Scope.read,))
    client = app.test_client()
    body = {"events": [{"kind": "k", "payload": {"a": 1}}]}
    ok = client.post("/api/events", json=body, headers={"Authorization": f"Bearer {events_token}"})
    assert ok.status_code == 202 and len(ok.get_json()["ids"]) == 1
    denied = client.post("/api/events", json=body, headers={"Authorization": f"Bearer {read_only}"})
    assert denied.status_code == 403
    assert "events" in denied.get_json()["message"]
    bad = client.post("/api/events", json=body, headers={"Authorization": "Bearer wbt_nope"})
    assert bad.status_code == 401
    anonymous = client.post("/api/events", json=body)
    assert anonymous.status_code in (400, 401)  # CSRF first for a cookie-less browser post
    land(services)
    actions = [r[0] for r in services.lake.query("SELECT action FROM audit")]
    assert "auth.denied" in actions and "auth.token_denied" in actions
    audit_text = str(services.lake.query("SELECT * FROM audit"))
    assert events_token not in audit_text and read_only not in audit_text


def test_client_mistakes_are_json_4xx(app: Flask, services: Services) -> None:
    make_user(services)
    _, token = make_token(services)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    cases = [
        client.post("/api/events", data="not json", headers=auth, content_type="text/plain"),
        client.post("/api/events", data="{bad", headers=auth, content_type="application/json"),
        client.post("/api/events", json={"events": []}, headers=auth),
        client.post("/api/events", json={"events": [{"kind": "k", "ts": "yesterday"}]},
                    headers=auth),
        client.post("/api/events", json={"events": [{"kind": "k"}] * 1001}, headers=auth),
        client.get("/api/events?limit=abc", headers=auth),
        client.get("/no/such/endpoint"),
        client.delete("/healthz"),
        client.post("/api/events", data=b"x" * (5 * 1024 * 1024), headers=auth,
                    content_type="application/json"),
    ]
    for resp in cases:
        assert 400 <= resp.status_code < 500, resp.status_code
        body = resp.get_json()
        assert body and body["message"], resp.get_data(as_text=True)[:200]
        assert "Traceback" not in resp.get_data(as_text=True)
    assert [c.status_code for c in cases[-3:]] == [404, 405, 413]


def test_events_land_and_read_back(app: Flask, services: Services) -> None:
    make_user(services)
    _, token = make_token(services)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    ids = client.post("/api/events", json={"source": "t", "events": [
        {"kind": "clicked", "payload": {"x": 1}}, {"id": "mine-1", "kind": "viewed"}]},
        headers=auth).get_json()["ids"]
    assert ids[1] == "mine-1"
    land(services)
    listed = client.get("/api/events?kind=clicked", headers=auth).get_json()
    assert listed["count"] == 1 and listed["events"][0]["id"] == ids[0]


def test_healthz_needs_no_auth(app: Flask) -> None:
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 200 and resp.get_json()["checks"]["redis"] == "ok"


def test_sign_in_never_redirects_off_site(app: Flask, services: Services) -> None:
    make_user(services)
    for target, expected in [
        ("/\\evil.example", "/"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("http://localhost:8501/runs", "http://localhost:8501/runs"),
        ("/api/me", "/api/me"),
    ]:
        client = app.test_client()
        resp = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                           "next": target, "csrf_token": csrf_of(client)})
        assert resp.status_code == 302
        assert resp.headers["Location"] == expected, target


def test_pathological_json_is_a_400(app: Flask, services: Services) -> None:
    make_user(services)
    _, token = make_token(services)
    deep = "[" * 100_000 + "]" * 100_000
    for path, headers in [("/login", {}), ("/api/events", {"Authorization": f"Bearer {token}"})]:
        resp = app.test_client().post(path, data=deep, headers=headers,
                                      content_type="application/json")
        assert resp.status_code == 400, path
        assert resp.get_json()["message"]


def test_event_times_out_of_range_are_refused(app: Flask, services: Services) -> None:
    make_user(services)
    _, token = make_token(services)
    auth = {"Authorization": f"Bearer {token}"}
    for ts in (10**20, 1_700_000_000, "1969-07-20T20:17:00Z", -5):
        resp = app.test_client().post("/api/events", json={"events": [{"kind": "k", "ts": ts}]},
                                      headers=auth)
        assert resp.status_code == 400, ts
        assert "ts" in resp.get_json()["message"]


def test_a_burst_of_guesses_is_capped(settings: Settings, services: Services) -> None:
    """Attempts are counted before the (slow) password check, so parallel guesses can't
    all slip under the limit."""
    from concurrent.futures import ThreadPoolExecutor

    make_user(services)
    app = create_app(settings, services)

    def guess(i: int) -> int:
        return app.test_client().post("/login", json={"username": "alice",
                                                      "password": f"guess-{i}-xxxx"}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(guess, range(16)))
    assert codes.count(401) <= 5 and codes.count(429) >= 11
