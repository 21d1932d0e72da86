"""Specs of the serving endpoints: predict, prediction lookup, feedback, metrics."""

from __future__ import annotations

from api.openapi import component, json_content, obj, operation, path_param
from mlwb.roles import Role, Scope

SCALAR = {"type": ["number", "string", "boolean", "null"]}
ROW = {"type": "object", "additionalProperties": SCALAR,
       "description": "one row: column -> value, as in the model's signature"}
PROBS = {"type": "object", "additionalProperties": {"type": "number"},
         "description": "class -> probability"}
SERVED_HEADERS = {
    "X-Request-ID": {"schema": {"type": "string"},
                     "description": "the prediction id (one row) or the request id"},
    "X-Model-Version": {"schema": {"type": "string"}},
    "X-Model-Arm": {"schema": {"type": "string"}},
    "Server-Timing": {"schema": {"type": "string"}, "description": "per-stage timings"},
}
TARGET = [{"name": "version", "in": "query", "required": False,
           "schema": {"type": "string", "pattern": "^[0-9]{1,9}$"},
           "description": "serve this version (scientist+)"},
          {"name": "alias", "in": "query", "required": False, "schema": {"type": "string"},
           "description": "serve this alias (scientist+)"},
          {"name": "X-Traffic-Key", "in": "header", "required": False,
           "schema": {"type": "string"}, "description": "sticky split key"}]

path_param("prediction_id", {"type": "string"}, "a prediction id a predict response returned")

PREDICTION_ROW = component("PredictionRow", obj({
    "prediction_id": {"type": "string"}, "prediction": SCALAR, "probabilities": PROBS,
}, required=("prediction_id", "prediction")))
operation("post", "/api/models/{name}/predict", summary="Predict with the served version",
          tag="serving", role=Role.viewer, scope=Scope.predict, errors=(404, 409, 422),
          params=TARGET,
          description="Rows are checked against the model's signature first: a missing, "
                      "extra or mistyped column is a 4xx naming it.",
          body=json_content({"oneOf": [
              obj({"instances": {"type": "array", "items": ROW, "minItems": 1},
                   "traffic_key": {"type": "string"}, "version": {"type": "string"},
                   "alias": {"type": "string"}}, required=("instances",)),
              obj({"inputs": {"oneOf": [
                  {"type": "array", "minItems": 1, "items": {"type": "array", "items": SCALAR}},
                  {"type": "object", "additionalProperties": {"type": "array",
                                                              "items": SCALAR}}]},
                   "traffic_key": {"type": "string"}, "version": {"type": "string"},
                   "alias": {"type": "string"}}, required=("inputs",)),
          ]}),
          responses={200: {"description": "One prediction per row", "headers": SERVED_HEADERS,
                           "content": json_content(obj({
                               "model": {"type": "string"}, "version": {"type": "string"},
                               "alias": {"type": ["string", "null"]},
                               "arm": {"type": "string"}, "request_id": {"type": "string"},
                               "predictions": {"type": "array", "items": PREDICTION_ROW},
                           }, required=("model", "version", "alias", "arm", "request_id",
                                        "predictions")))}})

operation("get", "/api/predictions/{prediction_id}",
          summary="A logged prediction with lineage and per-stage timings", tag="serving",
          errors=(404,), responses={200: ("The record", obj({
              "ts": {"type": "string"}, "prediction_id": {"type": "string"},
              "request_id": {"type": ["string", "null"]}, "model": {"type": "string"},
              "version": {"type": "string"}, "alias": {"type": ["string", "null"]},
              "arm": {"type": ["string", "null"]}, "caller": {"type": ["string", "null"]},
              "inputs": {}, "outputs": {}, "latency_ms": {"type": ["number", "null"]},
              "timings": {"type": ["object", "null"]}, "run_id": {"type": ["string", "null"]},
              "shadow": {"type": "array", "items": {"type": "object"}},
              "feedback": {"type": ["object", "null"]},
              "lineage": {"type": "object"},
          }, required=("prediction_id", "model", "version", "lineage"), additional=True))})

operation("post", "/api/feedback", summary="The true label of a prediction (once each)",
          tag="serving", role=Role.viewer, scope=Scope.feedback, errors=(404, 409),
          body=json_content({"oneOf": [
              obj({"prediction_id": {"type": "string"},
                   "label": {"type": ["string", "number", "boolean"]}},
                  required=("prediction_id", "label")),
              obj({"prediction_id": {"type": "string"},
                   "value": {"type": ["string", "number", "boolean"]}},
                  required=("prediction_id", "value")),
          ]}),
          responses={201: ("Recorded", obj({"prediction_id": {"type": "string"},
                                            "recorded": {"type": "boolean"}},
                                           required=("prediction_id", "recorded")))})

operation("get", "/metrics", summary="Prometheus metrics of every API worker", tag="serving",
          responses={200: {"description": "Prometheus text exposition format",
                           "content": {"text/plain": {"schema": {"type": "string"}}}}})
