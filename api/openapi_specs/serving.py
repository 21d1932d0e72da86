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

# -- MLflow scoring protocol ------------------------------------------------------------------
MLFLOW_ERROR = component("MlflowError", obj({
    "error_code": {"type": "string", "description": "MLflow's code, e.g. BAD_REQUEST"},
    "message": {"type": "string"}}, required=("error_code", "message")))
TABLE = {"oneOf": [
    obj({"dataframe_split": obj({
        "columns": {"type": "array", "items": {"type": "string"}},
        "index": {"type": "array"},
        "data": {"type": "array", "items": {"type": "array", "items": SCALAR}}},
        required=("data",)), "params": {"type": "object"}}, required=("dataframe_split",)),
    obj({"dataframe_records": {"type": "array", "items": ROW, "minItems": 1},
         "params": {"type": "object"}}, required=("dataframe_records",)),
    obj({"instances": {"type": "array", "minItems": 1},
         "params": {"type": "object"}}, required=("instances",)),
    obj({"inputs": {"type": ["array", "object"]}, "params": {"type": "object"}},
        required=("inputs",)),
]}
operation("post", "/api/models/{name}/invocations",
          summary="MLflow scoring protocol: answers equal to mlflow.pyfunc", tag="serving",
          role=Role.viewer, scope=Scope.predict, errors=(404, 409, 422),
          error_schema=MLFLOW_ERROR,
          description="The bodies `mlflow models serve` accepts; client mistakes are 4xx in "
                      "MLflow's error shape.",
          body={"application/json": {"schema": TABLE},
                "text/csv": {"schema": {"type": "string",
                                        "description": "as pandas.DataFrame.to_csv writes"}}},
          responses={200: {"description": "Predictions", "headers": {
              **SERVED_HEADERS, "X-Prediction-IDs": {"schema": {"type": "string"},
                                                     "description": "comma-separated (<=100)"}},
              "content": json_content(obj({"predictions": {"type": ["array", "object"]}},
                                          required=("predictions",)))}})

# -- Open Inference Protocol v2 -----------------------------------------------------------------
V2_ERROR = component("V2Error", obj({"error": {"type": "string"}}, required=("error",)))
path_param("ver", {"type": "string", "pattern": "^[0-9]{1,9}$"}, "model version")
TENSOR_META = obj({"name": {"type": "string"}, "datatype": {"type": "string"},
                   "shape": {"type": "array", "items": {"type": "integer"}}},
                  required=("name", "datatype", "shape"))
operation("get", "/v2/health/live", summary="Liveness (Open Inference Protocol)", tag="v2",
          scope=None, responses={200: ("Live", obj({"live": {"type": "boolean"}},
                                                   required=("live",)))})
operation("get", "/v2/health/ready", summary="Readiness (Open Inference Protocol)", tag="v2",
          scope=None, error_schema=V2_ERROR,
          responses={200: ("Ready", obj({"ready": {"type": "boolean"}}, required=("ready",)))})
operation("get", "/v2", summary="Server metadata", tag="v2", error_schema=V2_ERROR,
          responses={200: ("Server", obj({
              "name": {"type": "string"}, "version": {"type": "string"},
              "extensions": {"type": "array", "items": {"type": "string"}}},
              required=("name", "version", "extensions")))})
MODEL_META = obj({
    "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
    "platform": {"type": "string"}, "inputs": {"type": "array", "items": TENSOR_META},
    "outputs": {"type": "array", "items": TENSOR_META}, "parameters": {"type": "object"}},
    required=("name", "versions", "platform", "inputs", "outputs"))
MODEL_READY = obj({"name": {"type": "string"}, "version": {"type": "string"},
                   "ready": {"type": "boolean"}}, required=("name", "version", "ready"))
for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{ver}"):
    operation("get", prefix, summary="Model metadata: input and output tensors", tag="v2",
              errors=(400, 404, 409), error_schema=V2_ERROR,
              responses={200: ("Metadata", MODEL_META)})
    operation("get", f"{prefix}/ready", summary="Whether the version is loaded and verified",
              tag="v2", errors=(400, 404, 409), error_schema=V2_ERROR,
              description="409: the version's artifacts do not match the hash recorded at "
                          "registration (or none was recorded), so it is never served.",
              responses={200: ("Ready", MODEL_READY)})
INFER_INPUT = obj({
    "name": {"type": "string"}, "datatype": {"type": "string", "enum": [
        "FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32",
        "UINT16", "UINT8", "BOOL", "BYTES"]},
    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1,
              "maxItems": 2},
    "data": {"type": "array"}, "parameters": {"type": "object"}},
    required=("name", "datatype", "shape"))
INFER_REQUEST = component("InferRequest", obj({
    "id": {"type": "string"}, "parameters": {"type": "object"},
    "inputs": {"type": "array", "items": INFER_INPUT, "minItems": 1},
    "outputs": {"type": "array", "items": obj({"name": {"type": "string"},
                                                "parameters": {"type": "object"}},
                                               required=("name",))},
}, required=("inputs",)))
INFER_RESPONSE = component("InferResponse", obj({
    "model_name": {"type": "string"}, "model_version": {"type": "string"},
    "id": {"type": "string"}, "parameters": {"type": "object"},
    "outputs": {"type": "array", "items": obj({
        "name": {"type": "string"}, "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}}, "data": {"type": "array"},
        "parameters": {"type": "object"}}, required=("name", "datatype", "shape"))},
}, required=("model_name", "model_version", "outputs")))
BINARY = {"type": "string", "format": "binary",
          "description": "JSON header of Inference-Header-Content-Length bytes, then tensors"}
for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{ver}"):
    operation("post", f"{prefix}/infer", summary="Inference: one [N, F] tensor or [N] per column",
              tag="v2", role=Role.viewer, scope=Scope.predict, errors=(404, 409, 422),
              error_schema=V2_ERROR,
              params=[{"name": "Inference-Header-Content-Length", "in": "header",
                       "required": False, "schema": {"type": "integer", "minimum": 1},
                       "description": "binary tensor extension: length of the JSON header"}],
              body={"application/json": {"schema": INFER_REQUEST},
                    "application/octet-stream": {"schema": BINARY}},
              responses={200: {"description": "Outputs", "headers": SERVED_HEADERS,
                               "content": {"application/json": {"schema": INFER_RESPONSE},
                                           "application/octet-stream": {"schema": BINARY}}}})
