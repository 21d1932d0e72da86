"""``/predict`` and ``/invocations`` without Flask's request machinery, for the common call.

A prediction through Flask pays for a request context, URL matching, the before- and
after-request hooks, a parsed ``Request`` and a ``Response`` object: about as much CPU as
the whole of a bare Flask endpoint, on every request. :class:`FastPredict` wraps the app's
WSGI callable and serves the common call itself — a bearer token, no cookie, no query
string, a UTF-8 JSON body (for ``/predict``, with ``instances`` or ``inputs``; for
MLflow's ``/invocations``, any JSON body its view takes) — through the same
:func:`~api.serving.service.serve_call` the Flask views use: the same validation, traffic
split, signed ids, prediction log, rate limit and metrics, and the same response body and
headers. CSV bodies and the Open Inference Protocol go through Flask.

Anything else goes to Flask untouched, and so does anything that fails before the request
is counted against the rate limit (a bad token, a bad body, an unknown model, a model's
refusal), with its body put back: the error, its audit and its metrics come from the one
place that makes them. What fails after counting (over the rate limit, the log
unavailable, an error of ours) is answered here in the view's shape, since going to Flask
would count it twice.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from flask import Flask

from api.errors import incident_message, new_incident
from api.serving import invocations, predict
from api.serving.predict import BODY_KEYS, parse_simple
from api.serving.service import (
    Call,
    Result,
    serve_call,
    serving,
    traffic_key_of,
)
from mlwb import fastjson
from mlwb.errors import WorkbenchError
from mlwb.roles import Role, Scope
from mlwb.services import Services

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_PATH = re.compile(r"/api/models/([^/]+)/(predict|invocations)\Z")
_JSON = {"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"}
_FAST_KEYS = BODY_KEYS - {"version", "alias"}  # asking for a version needs a role check


class FastPredict:
    """WSGI middleware: serves the common ``/predict`` and ``/invocations`` calls, hands
    every other request to ``wsgi_app`` (the Flask app's own)."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.served = 0  # requests answered here, for tests (not exact under concurrency)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        """Serve the request, here or through Flask."""
        if environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        match = _PATH.match(environ.get("PATH_INFO", ""))
        if match is None or not self._plain(environ):
            return self.wsgi_app(environ, start_response)
        length = int(environ["CONTENT_LENGTH"])
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)  # Flask reads it again if the call goes there
        if len(raw) != length:
            return self.wsgi_app(environ, start_response)
        answer = self._serve(environ, match.group(1), match.group(2), raw)
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.wsgi_app(environ, start_response)
        status, headers, payload = answer
        self.served += 1
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [payload]

    def _plain(self, environ: dict[str, Any]) -> bool:
        """The common call: token, JSON of a known length within the limit, nothing else."""
        if (environ.get("QUERY_STRING") or "HTTP_COOKIE" in environ
                or not environ.get("HTTP_AUTHORIZATION", "").startswith("Bearer ")
                or not environ["PATH_INFO"].isascii()  # Flask decodes paths as UTF-8
                or "HTTP_TRANSFER_ENCODING" in environ):
            return False
        ctype = environ.get("CONTENT_TYPE", "")
        if ctype != "application/json" and ctype.lower() not in _JSON:
            return False
        length = environ.get("CONTENT_LENGTH", "")
        if not (length.isascii() and length.isdigit()):  # isdigit alone takes "²"
            return False
        limit = self.app.config.get("MAX_CONTENT_LENGTH")  # read per request, as Flask does
        return 0 < int(length) <= (limit or int(length))

    def _serve(self, environ: dict[str, Any], name: str, endpoint: str, raw: bytes
               ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """The response, or None to let Flask answer (it refuses with the right error)."""
        started = time.perf_counter()  # what Flask's before_request would time from
        # Anything that goes wrong before the request is counted is Flask's to answer: it
        # refuses in the view's shape, audits, and counts the refusal.
        try:
            body = fastjson.loads(raw)
            if not isinstance(body, dict):
                return None
            svc: Services = self.app.extensions["wb"]
            principal = svc.tokens.authenticate(environ["HTTP_AUTHORIZATION"][7:].strip())
            if principal is None or not principal.may(Role.viewer, Scope.predict):
                return None  # Flask answers 401/403 and audits it
            params: dict[str, Any] | None = None
            if endpoint == "predict":
                if not body.keys() <= _FAST_KEYS:
                    return None
                parse = parse_simple(body)
                key = traffic_key_of(environ.get("HTTP_X_TRAFFIC_KEY"), body)
            else:
                table, params = invocations.json_frame(body)
                parse = invocations.table_parser(table)
                key = traffic_key_of(environ.get("HTTP_X_TRAFFIC_KEY"), None)
            state = serving(self.app)
        except Exception:
            return None
        call = Call(principal, key)
        try:
            state.check_rate(call.caller)
            result, _ = serve_call(state, name, parse, call, params=params, endpoint=endpoint)
            headers, payload = self._answer(name, endpoint, result)
        except Exception as exc:
            if not call.counted:
                return None
            if isinstance(exc, WorkbenchError):
                return self._refused(exc, call, endpoint, started)
            incident = new_incident(environ["REQUEST_METHOD"], environ["PATH_INFO"])
            return self._refused(Internal(incident_message(incident), incident=incident),
                                 call, endpoint, started)
        state.metrics.observe(name, result.model.version, result.arm.arm, endpoint, 200,
                              time.perf_counter() - started)
        return 200, headers, payload

    def _answer(self, name: str, endpoint: str, result: Result
                ) -> tuple[list[tuple[str, str]], bytes]:
        """The Flask view's response, as header pairs and body."""
        if endpoint == "predict":
            payload = fastjson.dumps(predict.answer(name, result),
                                     self.app.json.default) + b"\n"  # type: ignore[attr-defined]
            extra = result.headers()
        else:
            extra, payload = invocations.answer(result)
        return [("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
                *extra.items()], payload

    def _refused(self, exc: WorkbenchError, call: Call, endpoint: str, started: float
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        """A refusal after the hit was counted: over the rate limit, the log is down, or an
        error of ours (Flask would count it twice)."""
        if endpoint == "predict":
            payload = fastjson.dumps(exc.to_dict(), self.app.json.default) + b"\n"  # type: ignore[attr-defined]
        else:  # MLflow's error shape, as the /invocations blueprint answers
            payload = invocations.error_body(exc.status, exc.message).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        if exc.status == 429 and "retry_after" in exc.context:
            headers.append(("Retry-After", str(exc.context["retry_after"])))
        model, version, arm, _ = call.labels or ("", "", "", endpoint)
        serving(self.app).metrics.observe(model, version, arm, endpoint, exc.status,
                                          time.perf_counter() - started)
        return exc.status, headers, payload


class Internal(WorkbenchError):
    """An error of ours after the request was counted: a 500 naming the incident."""

    def to_dict(self) -> dict[str, Any]:
        """The body Flask's handler of unexpected errors writes (``api.errors``)."""
        return {"error": "internal_error", "message": self.message, **self.context}


def install(app: Flask) -> None:
    """Put the fast path in front of ``app``'s WSGI callable (and any middleware on it)."""
    app.wsgi_app = FastPredict(app, app.wsgi_app)  # type: ignore[method-assign]
