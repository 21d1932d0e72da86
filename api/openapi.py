"""``GET /openapi.json``: the OpenAPI 3.1 description of every endpoint of the app.

Operations are registered in :data:`OPERATIONS`, keyed by ``(method, path)`` with the
path in OpenAPI form (``/api/models/{name}/predict``); the specs live in
:mod:`api.openapi_specs`, one module per area. :func:`build_spec` keeps only operations the
app really routes, so the document never describes an endpoint that is not there, and
:func:`undocumented` lists routes no operation describes (a test keeps it empty).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from api.auth import requires
from mlwb.roles import Role, Scope

bp = Blueprint("openapi", __name__)

JSON = "application/json"
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {}
SCHEMAS: dict[str, dict[str, Any]] = {}
SPEC_MODULES = ["foundation", "models", "serving", "jobs"]
_FLASK_PARAM = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def component(name: str, schema: dict[str, Any]) -> dict[str, str]:
    """Register a named schema; returns a reference to it."""
    SCHEMAS[name] = schema
    return ref(name)


def obj(properties: dict[str, Any], required: tuple[str, ...] = (),
        additional: bool | dict[str, Any] = False, **extra: Any) -> dict[str, Any]:
    """An object schema (closed unless ``additional`` says otherwise)."""
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "additionalProperties": additional, **extra}
    if required:
        out["required"] = list(required)
    return out


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """``content`` of a JSON body."""
    return {JSON: {"schema": schema}}


ERROR = component("Error", obj({
    "error": {"type": "string", "description": "machine-readable code"},
    "message": {"type": "string", "description": "what is wrong and how to fix it"},
    "context": {"type": "object", "description": "ids that locate the problem"},
    "incident": {"type": "string"},
}, required=("error", "message")))

ERROR_TEXT = {400: "Invalid input (the message names the field)",
              401: "Not signed in, or the token is unknown or revoked",
              403: "The role or the token's scopes do not allow this",
              404: "Not found", 405: "Method not allowed", 409: "Conflict",
              413: "Body too large", 415: "Unsupported media type",
              422: "Well-formed but the values do not fit", 429: "Too many requests",
              503: "A store (Redis, state DB, MLflow) is unavailable"}


def operation(method: str, path: str, *, summary: str, tag: str,
              responses: dict[int, tuple[str, dict[str, Any]] | dict[str, Any]],
              scope: Scope | None = Scope.read, role: Role = Role.viewer,
              body: dict[str, Any] | None = None, body_required: bool = True,
              params: list[dict[str, Any]] | None = None, errors: tuple[int, ...] = (),
              description: str = "", error_schema: dict[str, Any] | None = None) -> None:
    """Describe one operation; ``scope=None`` marks it public.

    ``responses`` maps a status to ``(description, schema)`` for JSON, or to a full OpenAPI
    response object. Protected operations get 401/403/429, body-taking ones 400/413/415,
    and every one 503, in addition to ``errors``; their body is ``error_schema`` (default:
    the product's ``Error``; the MLflow and Open Inference faces have their own).
    """
    out: dict[str, Any] = {"summary": summary, "tags": [tag], "operationId": _op_id(method,
                                                                                 path)}
    if description:
        out["description"] = description
    if scope is None:
        out["security"] = []
    else:
        out["description"] = (description + "\n\n" if description else "") + (
            f"Needs the `{role.value}` role (people) or the `{scope.value}` scope (tokens).")
    path_params = [_path_param(n) for n in re.findall(r"{(\w+)}", path)]
    if path_params or params:
        out["parameters"] = [*path_params, *(params or [])]
    if body is not None:
        out["requestBody"] = {"required": body_required, "content": body}
    codes = set(errors) | {503}
    if scope is not None:
        codes |= {401, 403, 429}
    if body is not None:
        codes |= {400, 413, 415}
    resp: dict[str, Any] = {}
    for status, spec in responses.items():
        if isinstance(spec, tuple):
            resp[str(status)] = {"description": spec[0], "content": json_content(spec[1])}
        else:
            resp[str(status)] = spec
    for status in sorted(codes - set(responses)):
        resp[str(status)] = {"description": ERROR_TEXT[status],
                             "content": json_content(error_schema or ERROR)}
    out["responses"] = resp
    OPERATIONS[(method.lower(), path)] = out


PATH_PARAMS: dict[str, dict[str, Any]] = {}


def path_param(name: str, schema: dict[str, Any], description: str) -> None:
    """Declare the schema of a path parameter used by any operation."""
    PATH_PARAMS[name] = {"name": name, "in": "path", "required": True, "schema": schema,
                         "description": description}


def _path_param(name: str) -> dict[str, Any]:
    if name not in PATH_PARAMS:
        raise KeyError(f"path parameter {name!r} has no declared schema; call path_param()")
    return PATH_PARAMS[name]


def _op_id(method: str, path: str) -> str:
    words = re.sub(r"[{}]", "", path).strip("/").replace("/", "_").replace("-", "_")
    return f"{method.lower()}_{words or 'root'}"


def openapi_path(rule: str) -> str:
    """A Flask rule in OpenAPI form: ``/a/<int:id>`` -> ``/a/{id}``."""
    return _FLASK_PARAM.sub(lambda m: "{" + m.group(2) + "}", rule)


def _load_specs() -> None:
    for name in SPEC_MODULES:
        importlib.import_module(f"api.openapi_specs.{name}")


def routes(app: Flask) -> set[tuple[str, str]]:
    """Every ``(method, OpenAPI path)`` the app routes (HEAD/OPTIONS and static left out)."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                out.add((method.lower(), openapi_path(rule.rule)))
    return out


def undocumented(app: Flask) -> set[tuple[str, str]]:
    """Routes of ``app`` that no registered operation describes."""
    _load_specs()
    return routes(app) - set(OPERATIONS)


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document for the operations ``app`` really routes."""
    _load_specs()
    present = routes(app)
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in sorted(OPERATIONS.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if (method, path) in present:
            paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "ml-workbench API", "version": "1",
                 "description": "Experiments, jobs, embedded model serving, promotions. "
                                "Send `Authorization: Bearer <token>` (`wb tokens create`) "
                                "or sign in at /login."},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(SCHEMAS.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A token from `wb tokens create`"},
                "session": {"type": "apiKey", "in": "cookie",
                            "name": app.config.get("SESSION_COOKIE_NAME", "wb_session")},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }


@bp.get("/openapi.json")
@requires(Role.viewer, Scope.read, "reading the API description")
def openapi() -> Response:
    """This API's OpenAPI document."""
    cache = current_app.extensions.setdefault("openapi", {})
    if "spec" not in cache:
        cache["spec"] = build_spec(current_app)
    return jsonify(cache["spec"])
