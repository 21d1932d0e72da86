"""Specs of the foundation's endpoints: health, sign-in, identity, events."""

from __future__ import annotations

from api.openapi import JSON, component, json_content, obj, operation
from mlwb import defaults
from mlwb.roles import Role, Scope

HEALTH = component("Health", obj({
    "status": {"type": "string", "enum": ["ok", "degraded"]},
    "checks": {"type": "object", "additionalProperties": True},
}, required=("status", "checks")))
operation("get", "/healthz", summary="Liveness and readiness (Redis, state DB, event backlog)",
          tag="health", scope=None,
          responses={200: ("Every store answers", HEALTH),
                     503: ("A store does not answer", HEALTH)})

HTML = {"text/html": {"schema": {"type": "string"}}}
REDIRECT = {"description": "Redirect", "headers": {
    "Location": {"schema": {"type": "string"}, "description": "where to go next"}}}
CREDENTIALS = obj({"username": {"type": "string", "maxLength": 64},
                   "password": {"type": "string", "maxLength": 1024}},
                  required=("username", "password"))
FORM = obj({"username": {"type": "string", "maxLength": 64},
            "password": {"type": "string", "maxLength": 1024},
            "csrf_token": {"type": "string"}, "next": {"type": "string"}},
           required=("username", "password", "csrf_token"))
operation("get", "/login", summary="The sign-in page", tag="auth", scope=None,
          params=[{"name": "next", "in": "query", "required": False,
                   "schema": {"type": "string"}, "description": "where to go after sign-in"}],
          responses={200: {"description": "HTML sign-in form", "content": HTML}})
SIGNED_IN = obj({"username": {"type": "string"}, "role": {"type": "string"}},
                required=("username", "role"))
operation("post", "/login", summary="Sign in with a username and password", tag="auth",
          scope=None, description="JSON bodies get JSON answers; the HTML form needs its "
          "CSRF token. Failed sign-ins are rate-limited per address and user.",
          body={JSON: {"schema": CREDENTIALS},
                "application/x-www-form-urlencoded": {"schema": FORM}},
          responses={200: ("Signed in (JSON)", SIGNED_IN), 302: REDIRECT,
                     401: {"description": "Wrong username or password",
                           "content": {**json_content(component("LoginFailed", obj({
                               "error": {"type": "string"}, "message": {"type": "string"}},
                               required=("error", "message")))), **HTML}},
                     429: {"description": "Too many failed sign-ins",
                           "content": {**json_content({"$ref": "#/components/schemas/Error"}),
                                       **HTML}}})
operation("get", "/logout", summary="The sign-out page (a button that posts /logout)",
          tag="auth", scope=None,
          responses={200: {"description": "HTML sign-out form", "content": HTML}})
operation("post", "/logout", summary="End the session", tag="auth", scope=None,
          responses={200: ("Signed out (JSON request)", obj({"signed_out": {"type": "boolean"}},
                                                            required=("signed_out",))),
                     302: REDIRECT}, errors=(400,))
operation("get", "/api/me", summary="Who the caller is", tag="auth",
          responses={200: ("The caller", component("Me", obj({
              "username": {"type": "string"}, "role": {"type": "string"},
              "token_id": {"type": ["string", "null"]},
              "scopes": {"type": ["array", "null"], "items": {"type": "string"}},
          }, required=("username", "role", "token_id", "scopes"))))})
operation("get", "/api/csrf", summary="A CSRF token for browser clients", tag="auth",
          scope=None, responses={200: ("A token", obj({"csrf_token": {"type": "string"}},
                                                     required=("csrf_token",)))})

EVENT = component("EventIn", obj({
    "id": {"type": ["string", "null"], "minLength": 1, "maxLength": 64,
           "description": "idempotency key: a retried event with the same id lands once"},
    # Times outside 2000..2100 are refused; years 2001-2099 stay inside for any UTC offset.
    "ts": {"type": ["string", "null"], "format": "date-time",
           "pattern": "^20(0[1-9]|[1-9][0-9])-",
           "description": "ISO 8601 time between 2000 and 2100 (default: now)"},
    "kind": {"type": ["string", "number", "boolean"], "description": "stored as text"},
    "payload": {"description": "any JSON value"},
}, required=("kind",)))
operation("post", "/api/events", summary="Record events (each lands exactly once)",
          tag="events", role=Role.scientist, scope=Scope.events,
          body=json_content(obj({
              "events": {"type": "array", "items": EVENT, "minItems": 1,
                         "maxItems": defaults.MAX_EVENTS_PER_REQUEST},
              "source": {"type": ["string", "null"]}}, required=("events",),
              additional=True)),
          responses={202: ("Acknowledged; will land once", obj({
              "accepted": {"type": "integer"},
              "ids": {"type": "array", "items": {"type": "string"}}},
              required=("accepted", "ids")))})
EVENT_OUT = obj({"id": {"type": "string"}, "ts": {"type": "string"},
                 "kind": {"type": "string"}, "source": {"type": ["string", "null"]},
                 "actor": {"type": ["string", "null"]}, "payload": {"type": ["string", "null"]}},
                required=("id", "ts", "kind"))
operation("get", "/api/events", summary="The newest landed events", tag="events",
          params=[{"name": "limit", "in": "query", "required": False,
                   "schema": {"type": "integer", "minimum": 0},
                   "description": "at most this many (10000 when more is asked)"},
                  {"name": "kind", "in": "query", "required": False,
                   "schema": {"type": "string"}}],
          responses={200: ("Events, newest first", obj({
              "events": {"type": "array", "items": EVENT_OUT},
              "count": {"type": "integer"}}, required=("events", "count")))}, errors=(400,))
