"""``POST /api/models/<name>/predict`` and ``GET /api/predictions/<id>``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from api.auth import requires, services
from api.serving.schema import InputSchema, Parsed, untyped
from api.serving.service import (
    Result,
    body_outputs,
    instrument,
    json_object,
    serve,
    serving,
)
from mlwb.errors import InputError, NotFound
from mlwb.predictions import get_prediction
from mlwb.roles import Role, Scope

bp = Blueprint("serving_predict", __name__)

BODY_KEYS = {"instances", "inputs", "traffic_key", "version", "alias"}


def parse_simple(body: dict[str, Any]) -> Any:
    """The parser for ``{"instances": [...]}`` or ``{"inputs": ...}`` bodies."""
    unknown = set(body) - BODY_KEYS
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}; send "
                         '{"instances": [{"column": value, ...}]} or {"inputs": [[...]]}')
    given = [k for k in ("instances", "inputs") if k in body]
    if len(given) != 1:
        raise InputError('send exactly one of "instances" (rows as objects) or "inputs" '
                         "(rows as arrays in the signature's column order, or columns)")
    key = given[0]
    data = body[key]

    def parse(schema: InputSchema | None) -> Parsed:
        if schema is None:
            if isinstance(data, list) and all(isinstance(r, dict) for r in data):
                return untyped(data)
            raise InputError("this model has no column signature; send rows as objects: "
                             '{"instances": [{"column": value, ...}]}')
        if isinstance(data, dict):
            return schema.columns(data, key)
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return schema.records(data, key)
        return schema.positional(data, key)

    return parse


@bp.post("/api/models/<name>/predict")
@requires(Role.viewer, Scope.predict, "predicting")
def predict(name: str) -> Response:
    """Predictions, probabilities, the version that answered and a signed id per row."""
    body = json_object()
    result, _ = serve(name, parse_simple(body), body=body)
    resp = jsonify(answer(name, result))
    resp.headers.update(result.headers())
    return resp


def answer(name: str, result: Result) -> dict[str, Any]:
    """The response body: the version that answered and each row's id and prediction."""
    return {"model": name, "version": result.model.version, "alias": result.arm.alias,
            "arm": result.arm.arm, "request_id": result.request_id,
            "predictions": body_outputs(result)}


@bp.get("/api/predictions/<prediction_id>")
@requires(Role.viewer, Scope.read, "reading a prediction")
def prediction(prediction_id: str) -> Response:
    """The logged prediction with lineage (version -> run -> data set) and stage timings."""
    state = serving()
    if not state.ids.verify(prediction_id):
        raise NotFound(f"{prediction_id!r} is not a prediction id issued by this server",
                       prediction_id=prediction_id)
    record = get_prediction(services().lake, prediction_id)
    if record is None:
        raise NotFound(f"prediction {prediction_id} is not in the store yet; the log lands "
                       "within seconds, retry shortly", prediction_id=prediction_id)
    record["lineage"] = lineage(record["model"], record["version"], record.get("run_id"))
    return jsonify(record)


def lineage(name: str, version: str, run_id: str | None) -> dict[str, Any]:
    """Model version -> run -> data set versions, from MLflow (best effort, never a 500)."""
    client = serving().runtime.client
    out: dict[str, Any] = {"model": name, "version": version, "run_id": run_id,
                           "run": None, "datasets": []}
    if not run_id:
        return out
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # the run may be deleted; the prediction record still stands
        out["run_error"] = f"run {run_id} could not be read: {exc.__class__.__name__}"
        return out
    out["run"] = {"run_id": run_id, "experiment_id": run.info.experiment_id,
                  "status": run.info.status, "params": dict(run.data.params),
                  "tags": {k: v for k, v in run.data.tags.items()
                           if k.startswith(("wb.", "dataset"))}}
    for di in run.inputs.dataset_inputs if run.inputs else []:
        ds = di.dataset
        out["datasets"].append({"name": ds.name, "digest": ds.digest, "source": ds.source,
                                "context": [t.value for t in di.tags]})
    return out


instrument(bp, "predict", {"predict"})
