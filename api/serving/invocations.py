"""``POST /api/models/<name>/invocations``: MLflow's scoring protocol, answered in-process.

Accepts exactly the bodies ``mlflow models serve`` accepts (``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs``, optional ``params``; ``application/json``
or ``text/csv``), parsed by MLflow's own parser, and answers ``{"predictions": [...]}`` equal
to ``mlflow.pyfunc`` on the same rows. Errors use MLflow's shape (``error_code``,
``message``); where MLflow answers a client mistake with a 500 or a stack trace, this answers
a 4xx naming the problem. Prediction ids: ``X-Request-ID`` and, for up to 100 rows,
``X-Prediction-IDs``.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from api.auth import requires
from api.serving.schema import InputSchema, Parsed, TooLarge, Unsupported, untyped
from api.serving.service import Result, instrument, serve
from mlwb import fastjson
from mlwb.errors import InputError, WorkbenchError
from mlwb.roles import Role, Scope

log = logging.getLogger(__name__)
bp = Blueprint("serving_invocations", __name__)

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "RESOURCE_DOES_NOT_EXIST", 409: "INVALID_STATE", 413: "BAD_REQUEST",
               415: "BAD_REQUEST", 422: "BAD_REQUEST", 429: "REQUEST_LIMIT_EXCEEDED",
               503: "TEMPORARILY_UNAVAILABLE"}
MAX_ID_HEADER_ROWS = 100


def error_body(status: int, message: str) -> str:
    """MLflow's error shape: ``{"error_code": ..., "message": ...}``."""
    return json.dumps({"error_code": ERROR_CODES.get(status, "INTERNAL_ERROR"),
                       "message": message})


def _error(status: int, message: str) -> Response:
    return Response(error_body(status, message), status=status, mimetype="application/json")


@bp.errorhandler(WorkbenchError)
def _workbench(exc: WorkbenchError) -> Response:
    resp = _error(exc.status, exc.message)
    if exc.status == 429 and "retry_after" in exc.context:
        resp.headers["Retry-After"] = str(exc.context["retry_after"])
    return resp


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        return _error(413, "the request body is too large; send fewer rows per request")
    return _error(status, exc.description or exc.name)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    incident = uuid.uuid4().hex[:12]
    log.exception("unhandled error %s on %s", incident, request.path)
    return _error(500, f"something went wrong on our side (incident {incident}); it was "
                       "logged. Retry, and report the incident id if it persists.")


def _content_type() -> str:
    raw = request.content_type or ""
    mime, *params = [p.strip() for p in raw.split(";")]
    mime = mime.lower()  # media types and parameter names are case-insensitive (RFC 9110)
    pairs = {k.strip().lower(): v.strip().strip('"') for k, _, v in
             (p.partition("=") for p in params if p)}
    if pairs.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        raise Unsupported("the scoring protocol takes UTF-8 bodies only")
    if set(pairs) - {"charset"}:
        raise Unsupported(f"unrecognized content type parameter(s): "
                          f"{', '.join(sorted(set(pairs) - {'charset'}))}")
    if mime not in ("application/json", "text/csv"):
        raise Unsupported(f"send application/json or text/csv; got {raw or 'no content type'!r}")
    return mime


def json_frame(body: Any) -> tuple[pd.DataFrame | list[dict[str, Any]], dict[str, Any] | None]:
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object with exactly one of "
                         f"{', '.join(FORMATS)}")
    given = [k for k in FORMATS if k in body]
    if len(given) != 1:
        raise InputError(f"the body must have exactly one of {', '.join(FORMATS)}; got "
                         f"{', '.join(sorted(body)) or 'none'}")
    unknown = set(body) - {*FORMATS, "params"}
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}; allowed: "
                         f"{', '.join(FORMATS)}, params")
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise InputError("params must be an object of name: value")
    key = given[0]
    data = body[key]
    if key == "dataframe_records" or (key in ("instances", "inputs") and isinstance(data, list)
                                      and data and isinstance(data[0], dict)):
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(f"{key} must be an array of objects (one per row)")
        return data, params
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    try:
        parsed = infer_and_parse_data({key: data})
    except MlflowException as exc:
        raise InputError(f"{key} could not be read as a table: {exc.message}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise InputError(f"{key} could not be read as a table: {exc}") from None
    if isinstance(parsed, dict) and parsed and all(np.ndim(v) == 0 for v in parsed.values()):
        # {"inputs": {"col": value}}: one row, as MLflow reads it (0-d arrays here)
        parsed = pd.DataFrame([{k: np.asarray(v).item() for k, v in parsed.items()}])
    if isinstance(parsed, dict):
        try:
            parsed = pd.DataFrame(parsed)
        except ValueError as exc:
            raise InputError(f"{key}: columns must be arrays of the same length ({exc})"
                             ) from None
    if not isinstance(parsed, pd.DataFrame):
        try:
            parsed = pd.DataFrame(parsed)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{key} must be rows (an array of arrays or of objects) or "
                             f"columns (an object of arrays): {exc}") from None
    return parsed, params


def _csv_frame() -> pd.DataFrame:
    text = request.get_data(cache=False)
    try:
        return pd.read_csv(io.BytesIO(text))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not CSV as pandas.DataFrame.to_csv() writes it: {exc}"
                         ) from None


@bp.post("/api/models/<name>/invocations")
@requires(Role.viewer, Scope.predict, "predicting")
def invocations(name: str) -> Response:
    """MLflow-compatible scoring: ``{"predictions": ...}`` equal to ``mlflow.pyfunc``."""
    mime = _content_type()
    params: dict[str, Any] | None = None
    if mime == "text/csv":
        table: pd.DataFrame | list[dict[str, Any]] = _csv_frame()
    else:
        try:
            body = fastjson.loads(request.get_data(cache=False) or b"null")
        except ValueError as exc:  # bad JSON or UTF-8, or nested too deeply
            raise InputError(f"the body is not valid JSON: {exc}") from None
        table, params = json_frame(body)
    result, _ = serve(name, table_parser(table), params=params, endpoint="invocations")
    headers, payload = answer(result)
    return Response(payload, mimetype="application/json", headers=headers)


def table_parser(table: pd.DataFrame | list[dict[str, Any]]
                 ) -> Callable[[InputSchema | None], Parsed]:
    """The parse step of :func:`~api.serving.service.serve` for a body's table (rows as
    objects, or a frame MLflow's parser built); 413 for too many rows."""
    if isinstance(table, pd.DataFrame) and len(table) > 10_000:
        raise TooLarge(f"{len(table)} rows in one request; send at most 10000 per request")

    def parse(schema: InputSchema | None) -> Parsed:
        if isinstance(table, list):
            return schema.records(table, "rows") if schema else untyped(table)
        if schema is None:
            return Parsed(table.to_dict("records"), frame=table)
        return schema.frame(table)

    return parse


def answer(result: Result) -> tuple[dict[str, str], bytes]:
    """Headers and body of a served request: ``{"predictions": ...}`` as MLflow writes it."""
    headers = result.headers()
    if len(result.prediction_ids) <= MAX_ID_HEADER_ROWS:
        headers["X-Prediction-IDs"] = ",".join(result.prediction_ids)
    # Valid JSON always: a non-finite output is null (json.dumps would write a bare NaN).
    return headers, fastjson.dumps({"predictions": result.output.predictions})


instrument(bp, "invocations", {"invocations"})
