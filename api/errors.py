"""Every error becomes JSON with a message a person can act on; mapped here, in one place."""

from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, jsonify, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from mlwb.errors import PermissionDenied, WorkbenchError

log = logging.getLogger(__name__)

HINTS = {
    404: "no such endpoint; see /openapi.json for the list",
    405: "this endpoint does not take that HTTP method; see /openapi.json",
    413: "the request body is too large; send fewer rows per request",
    415: "send the body as application/json",
}


def _json(status: int, code: str, message: str, **extra: object) -> Response:
    resp = jsonify({"error": code, "message": message, **extra})
    resp.status_code = status
    return resp


def register_error_handlers(app: Flask) -> None:
    """Install the JSON error handlers on ``app``."""

    @app.errorhandler(WorkbenchError)
    def _workbench(exc: WorkbenchError) -> Response:
        if isinstance(exc, PermissionDenied):
            from api.auth import audit_denial

            try:
                audit_denial(exc)
            except Exception:  # the store is down: still answer the 403
                log.warning("could not audit a denial on %s", request.path, exc_info=True)
        resp = jsonify(exc.to_dict())
        resp.status_code = exc.status
        if exc.status == 429 and "retry_after" in exc.context:
            resp.headers["Retry-After"] = str(exc.context["retry_after"])
        return resp

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> Response:
        return _json(400, "csrf_failed",
                     f"{exc.description} Reload the page and submit again, or call the API "
                     "with an `Authorization: Bearer` token.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = HINTS.get(status) or exc.description or exc.name
        resp = _json(status, exc.name.lower().replace(" ", "_"), message)
        valid = getattr(exc, "valid_methods", None)
        if status == 405 and valid:  # RFC 9110: a 405 lists the methods the resource takes
            resp.headers["Allow"] = ", ".join(sorted(valid))
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        incident = new_incident(request.method, request.path)
        return _json(500, "internal_error", incident_message(incident), incident=incident)


def new_incident(method: str, path: str) -> str:
    """Log the exception being handled under a fresh incident id, and return the id."""
    incident = uuid.uuid4().hex[:12]
    log.exception("unhandled error %s on %s %s", incident, method, path)
    return incident


def incident_message(incident: str) -> str:
    """What a caller reads about an error of ours."""
    return (f"something went wrong on our side (incident {incident}); it was logged. "
            "Retry, and report the incident id if it persists.")
