"""Open Inference Protocol v2 (KServe / Triton), JSON and the binary tensor data extension.

Inputs are one ``[N, F]`` tensor (columns in the signature's order) or one ``[N]`` tensor per
column (named like the columns). Outputs are ``predict`` (``[N]``) and, for classifiers,
``predict_proba`` (``[N, C]``, classes in ``parameters.classes``). Each request goes through
the same validation, traffic policy, log and signed ids as ``/predict``; the ids are in
``parameters.prediction_ids``. Errors use the protocol's shape, ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import struct
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import redis
from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from api.auth import requires, services
from api.serving.schema import InputSchema, Parsed
from api.serving.service import instrument, serve, serving
from mlwb.errors import InputError, WorkbenchError
from mlwb.roles import Role, Scope

bp = Blueprint("serving_v2", __name__)

DATATYPES = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32",
             "boolean": "BOOL", "string": "BYTES", "binary": "BYTES", "datetime": "BYTES"}
NUMPY = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4",
         "INT16": "<i2", "INT8": "<i1", "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2",
         "UINT8": "<u1", "BOOL": "|b1"}
HEADER = "Inference-Header-Content-Length"


def _error(status: int, message: str) -> Response:
    resp = jsonify({"error": message})
    resp.status_code = status
    return resp


@bp.errorhandler(WorkbenchError)
def _workbench(exc: WorkbenchError) -> Response:
    return _error(exc.status, exc.message)


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Response:
    return _error(exc.code or 500, exc.description or exc.name)


# -- health and metadata ------------------------------------------------------------------
@bp.get("/v2/health/live")
def live() -> Response:
    """The process answers (no auth, for orchestrators)."""
    return jsonify({"live": True})


@bp.get("/v2/health/ready")
def ready() -> Response:
    """Ready when Redis (rate limits, prediction log) answers (no auth)."""
    try:
        services().redis.ping()
    except redis.RedisError:
        return _error(503, "the prediction log (Redis) is unavailable")
    return jsonify({"ready": True})


@bp.get("/v2")
@requires(Role.viewer, Scope.read, "reading server metadata")
def server() -> Response:
    """Server metadata."""
    try:
        ver = version("ml-workbench")
    except PackageNotFoundError:  # pragma: no cover - always installed in practice
        ver = "0"
    return jsonify({"name": "ml-workbench", "version": ver, "extensions": ["binary_tensor_data"]})


def _model(name: str, ver: str | None) -> Any:
    runtime = serving().runtime
    if ver is None:
        primary, _ = runtime.choose(name)
        ver = primary.version
    return runtime.model(name, ver)


@bp.get("/v2/models/<name>")
@bp.get("/v2/models/<name>/versions/<ver>")
@requires(Role.viewer, Scope.read, "reading model metadata")
def metadata(name: str, ver: str | None = None) -> Response:
    """Inputs and outputs of the served (or named) version as v2 tensors."""
    model = _model(name, ver)
    schema: InputSchema | None = model.schema
    inputs = [{"name": f.name, "datatype": DATATYPES.get(f.kind, "BYTES"), "shape": [-1]}
              for f in (schema.fields if schema else [])]
    outputs: list[dict[str, Any]] = [{"name": "predict", "datatype": _pred_type(model.classes),
                                      "shape": [-1]}]
    if model.classes is not None:
        outputs.append({"name": "predict_proba", "datatype": "FP64",
                        "shape": [-1, len(model.classes)]})
    return jsonify({"name": name, "versions": [model.version], "platform": f"mlflow_{model.kind}",
                    "inputs": inputs, "outputs": outputs,
                    "parameters": {"classes": model.classes,
                                   "single_tensor_input": {"shape": [-1, len(inputs)],
                                                           "order": [i["name"] for i in inputs]}}})


@bp.get("/v2/models/<name>/ready")
@bp.get("/v2/models/<name>/versions/<ver>/ready")
@requires(Role.viewer, Scope.read, "reading model readiness")
def model_ready(name: str, ver: str | None = None) -> Response:
    """200 once the version is loaded and verified in this process (loads it if needed);
    otherwise the reason, with its status (404 unknown, 409 unverifiable or no champion)."""
    model = _model(name, ver)
    return jsonify({"name": name, "version": model.version, "ready": True})


# -- inference ------------------------------------------------------------------------------
def _read_request() -> tuple[dict[str, Any], bytes]:
    raw = request.get_data(cache=False)
    length = request.headers.get(HEADER)
    if length is None:
        if not (request.mimetype or "").endswith("json"):
            raise InputError("send a JSON inference request (Content-Type: application/json), "
                             f"or binary tensors with the {HEADER} header")
        head, tail = raw, b""
    else:
        try:
            n = int(length)
        except ValueError:
            raise InputError(f"{HEADER} must be an integer") from None
        if not 0 < n <= len(raw):
            raise InputError(f"{HEADER} is {n} but the body has {len(raw)} bytes")
        head, tail = raw[:n], raw[n:]
    try:
        body = json.loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the inference header is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InputError('an inference request is {"inputs": [{"name", "shape", "datatype", '
                         '"data"}, ...]}')
    return body, tail


def _tensor(spec: Any, tail: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(spec, dict):
        raise InputError("each input must be an object with name, shape, datatype and data")
    name, shape, dtype = spec.get("name"), spec.get("shape"), spec.get("datatype")
    if not isinstance(name, str) or not isinstance(shape, list) or not all(
            isinstance(d, int) and d >= 0 for d in shape) or not 1 <= len(shape) <= 2:
        raise InputError(f"input {name!r}: name must be text and shape [N] or [N, F]")
    if dtype not in NUMPY and dtype != "BYTES":
        raise InputError(f"input {name!r}: unsupported datatype {dtype!r}; use one of "
                         f"{', '.join([*NUMPY, 'BYTES'])}")
    count = int(np.prod(shape, dtype=object))  # Python ints: no overflow on absurd shapes
    params = _params(spec.get("parameters"), f"input {name!r}: parameters")
    size = params.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise InputError(f"input {name!r}: binary_data_size must be a non-negative integer")
    if size is not None:
        chunk = tail[offset:offset + int(size)]
        if len(chunk) != int(size):
            raise InputError(f"input {name!r}: binary data is shorter than binary_data_size")
        offset += int(size)
        try:
            if dtype == "BYTES":
                values, pos = [], 0
                while pos < len(chunk):
                    (n,) = struct.unpack_from("<I", chunk, pos)
                    values.append(chunk[pos + 4:pos + 4 + n].decode())
                    pos += 4 + n
                arr = np.array(values, dtype=object)
            else:
                arr = np.frombuffer(chunk, dtype=NUMPY[dtype])
        except (struct.error, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"input {name!r}: binary data does not match {dtype}: {exc}"
                             ) from None
    else:
        data = spec.get("data")
        if not isinstance(data, list):
            raise InputError(f"input {name!r}: data must be an array (or use binary data)")
        try:
            arr = np.array(data, dtype=object).ravel()
        except ValueError:
            raise InputError(f"input {name!r}: data must be a flat or evenly nested array"
                             ) from None
    if arr.size != count:
        raise InputError(f"input {name!r}: shape {shape} needs {count} values, got {arr.size}")
    return name, arr.reshape(shape), offset


def _to_rows(inputs: list[Any], tail: bytes, schema: InputSchema | None) -> Parsed:
    if schema is None:
        raise InputError("this model has no column signature; use /predict with records")
    tensors, offset = [], 0
    for spec in inputs:
        name, arr, offset = _tensor(spec, tail, offset)
        tensors.append((name, arr))
    if len(tensors) == 1 and tensors[0][1].ndim == 2:
        return schema.positional([[_py(v) for v in row] for row in tensors[0][1]], "inputs")
    if any(a.ndim != 1 for _, a in tensors):
        raise InputError("send one [N, F] tensor, or one [N] tensor per column")
    return schema.columns({n: [_py(v) for v in a] for n, a in tensors}, "inputs")


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _pred_type(classes: list[Any] | None) -> str:
    if classes and all(isinstance(c, str) for c in classes):
        return "BYTES"
    return "INT64" if classes is not None else "FP64"


@bp.post("/v2/models/<name>/infer")
@bp.post("/v2/models/<name>/versions/<ver>/infer")
@requires(Role.viewer, Scope.predict, "predicting")
def infer(name: str, ver: str | None = None) -> Response:
    """Run inference; outputs as JSON, or binary when asked (``binary_data``)."""
    body, tail = _read_request()
    result, _ = serve(name, lambda schema: _to_rows(body["inputs"], tail, schema),
                      body={"version": ver} if ver else None, endpoint="v2")
    out = result.output
    n = len(out.predictions)
    tensors = [("predict", _pred_type(result.model.classes), [n], out.predictions)]
    if out.probabilities is not None and result.model.classes is not None:
        keys = [str(c) for c in result.model.classes]
        flat = [row[k] for row in out.probabilities for k in keys]
        tensors.append(("predict_proba", "FP64", [n, len(keys)], flat))
    wanted = body.get("outputs")
    binary_all = bool(_params(body.get("parameters"), "parameters").get("binary_data_output"))
    binary: dict[str, bool] = {}
    if wanted is not None and not isinstance(wanted, list):
        raise InputError("outputs must be an array of {name, parameters}")
    if wanted:
        names = {str(o.get("name")): bool(_params(o.get("parameters"), "outputs[].parameters")
                                     .get("binary_data"))
                 for o in wanted if isinstance(o, dict)}
        unknown = set(names) - {t[0] for t in tensors}
        if unknown:
            raise InputError(f"unknown output(s) {', '.join(map(str, unknown))}; this model "
                             f"has {', '.join(t[0] for t in tensors)}")
        tensors = [t for t in tensors if t[0] in names]
        binary = names
    outputs, blobs = [], []
    for tname, dtype, shape, data in tensors:
        entry: dict[str, Any] = {"name": tname, "datatype": dtype, "shape": shape}
        if binary.get(tname) or binary_all:
            blob = _encode(dtype, data)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = data
        outputs.append(entry)
    payload = {"model_name": name, "model_version": result.model.version,
               "outputs": outputs, "parameters": {"prediction_ids": result.prediction_ids,
                                                  "arm": result.arm.arm}}
    if "id" in body:
        payload["id"] = body["id"]
    head = json.dumps(payload).encode()
    headers = result.headers()
    if not blobs:
        return Response(head, mimetype="application/json", headers=headers)
    headers[HEADER] = str(len(head))
    return Response(head + b"".join(blobs), mimetype="application/octet-stream",
                    headers=headers)


def _params(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where} must be an object")
    return value


def _encode(dtype: str, data: list[Any]) -> bytes:
    if dtype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in (str(v).encode() for v in data))
    return np.asarray(data, dtype=NUMPY[dtype]).tobytes()


instrument(bp, "v2", {"infer"})
