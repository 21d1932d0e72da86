"""Open Inference Protocol v2 (KServe / Triton), JSON and the binary tensor data extension.

Inputs are one ``[N, F]`` tensor (columns in the signature's order) or one ``[N]`` tensor per
column (named like the columns). Outputs are ``predict`` (``[N]``) and, for classifiers,
``predict_proba`` (``[N, C]``, classes in ``parameters.classes``). Each request goes through
the same validation, traffic policy, log and signed ids as ``/predict``; the ids are in
``parameters.prediction_ids``. Errors use the protocol's shape, ``{"error": "..."}``.
"""

from __future__ import annotations

import math
import struct
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import redis
from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from api.auth import requires, services
from api.serving.schema import InputSchema, Parsed
from api.serving.service import instrument, serve, serving
from mlwb import fastjson
from mlwb.errors import InputError, WorkbenchError
from mlwb.roles import Role, Scope

bp = Blueprint("serving_v2", __name__)

DATATYPES = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32",
             "boolean": "BOOL", "string": "BYTES", "binary": "BYTES", "datetime": "BYTES"}
NUMPY = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4",
         "INT16": "<i2", "INT8": "<i1", "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2",
         "UINT8": "<u1", "BOOL": "|b1"}
HEADER = "Inference-Header-Content-Length"
OUTPUTS = ("predict", "predict_proba")
INT64 = range(-2**63, 2**63)


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
        body = fastjson.loads(head)  # too deep a nesting is a ValueError here, not a crash
    except ValueError as exc:  # UnicodeDecodeError included
        raise InputError(f"the inference header is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InputError('an inference request is {"inputs": [{"name", "shape", "datatype", '
                         '"data"}, ...]}')
    if body.get("id") is not None and not isinstance(body["id"], str):
        raise InputError("id must be a string (it is echoed in the response)")
    return body, tail


def _tensor(spec: Any, tail: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(spec, dict):
        raise InputError("each input must be an object with name, shape, datatype and data")
    name, shape, dtype = spec.get("name"), spec.get("shape"), spec.get("datatype")
    if not isinstance(name, str):
        raise InputError(f"each input needs a name (text), got {name!r}")
    # bool is an int in Python: [true, 30] would pass a plain isinstance check
    if not isinstance(shape, list) or not 1 <= len(shape) <= 2 or not all(
            type(d) is int and d >= 0 for d in shape):
        raise InputError(f"input {name!r}: shape must be [N] or [N, F] with non-negative "
                         f"integers, got {shape!r}")
    if not isinstance(dtype, str) or (dtype not in NUMPY and dtype != "BYTES"):
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
                arr = np.array(_bytes_elements(chunk, name), dtype=object)
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


def _bytes_elements(chunk: bytes, name: str) -> list[str]:
    """BYTES in the binary extension: each element a 4-byte little-endian length, then it."""
    values, pos = [], 0
    while pos < len(chunk):
        (n,) = struct.unpack_from("<I", chunk, pos)
        if pos + 4 + n > len(chunk):  # a slice would silently cut the value short
            raise InputError(f"input {name!r}: a BYTES element of {n} bytes runs past "
                             "binary_data_size")
        values.append(chunk[pos + 4:pos + 4 + n].decode())
        pos += 4 + n
    return values


def _to_rows(inputs: list[Any], tail: bytes, schema: InputSchema | None) -> Parsed:
    if schema is None:
        raise InputError("this model has no column signature; use /predict with records")
    tensors: list[tuple[str, np.ndarray]] = []
    offset = 0
    for spec in inputs:
        name, arr, offset = _tensor(spec, tail, offset)
        if any(name == seen for seen, _ in tensors):  # a dict would keep the last silently
            raise InputError(f"column {name!r} given twice; send one tensor per column")
        tensors.append((name, arr))
    if offset != len(tail):
        raise InputError(f"the body has {len(tail) - offset} bytes beyond the binary tensors "
                         f"its inputs declare (binary_data_size after {HEADER})")
    if len(tensors) == 1 and tensors[0][1].ndim == 2:
        return schema.positional([[_py(v) for v in row] for row in tensors[0][1]], "inputs")
    if any(a.ndim != 1 for _, a in tensors):
        raise InputError("send one [N, F] tensor, or one [N] tensor per column")
    return schema.columns({n: [_py(v) for v in a] for n, a in tensors}, "inputs")


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _pred_type(classes: list[Any] | None, predictions: list[Any] | None = None) -> str:
    """The datatype of ``predict``: from the classes for a classifier (the same on every
    request), else from the values; anything not a number or a bool is BYTES."""
    values = classes if classes is not None else predictions or []
    if not values:
        return "FP64"  # metadata of a model without classes: regressors answer numbers
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    numbers = [v for v in values if not isinstance(v, bool) and isinstance(v, int | float)]
    if len(numbers) < len(values) or any(isinstance(v, int) and v not in INT64 for v in numbers):
        return "BYTES"
    return "INT64" if all(isinstance(v, int) for v in numbers) else "FP64"


def _requested_outputs(body: dict[str, Any]) -> tuple[dict[str, bool], bool]:
    """``({output: binary}, binary for all)`` asked by the request (``{}``: every output)."""
    binary_all = _flag(body.get("parameters"), "binary_data_output", "parameters")
    wanted = body.get("outputs")
    if wanted is None:
        return {}, binary_all
    if not isinstance(wanted, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted):
        raise InputError('outputs must be an array of {"name": ..., "parameters": {...}}')
    names: dict[str, bool] = {}
    for o in wanted:
        name = o["name"]
        if name not in OUTPUTS:
            raise InputError(f"unknown output {name!r}; outputs are predict and, for "
                             "classifiers, predict_proba")
        if name in names:
            raise InputError(f"output {name!r} is asked twice")
        names[name] = _flag(o.get("parameters"), "binary_data", f"outputs {name!r} parameters")
    return names, binary_all


def _flag(params: Any, key: str, where: str) -> bool:
    value = _params(params, where).get(key, False)
    if not isinstance(value, bool):
        raise InputError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _served_classes(name: str) -> list[Any] | None:
    """Classes of the version serve() chose for this request.

    serve() records its choice in ``g.serving_call.labels`` before it parses; the parse step
    is the last point before the prediction is logged and counted, so outputs are checked
    there.
    """
    version = g.serving_call.labels[1]
    classes: list[Any] | None = serving().runtime.model(name, version).classes
    return classes


@bp.post("/v2/models/<name>/infer")
@bp.post("/v2/models/<name>/versions/<ver>/infer")
@requires(Role.viewer, Scope.predict, "predicting")
def infer(name: str, ver: str | None = None) -> Response:
    """Run inference; outputs as JSON, or binary when asked (``binary_data``)."""
    body, tail = _read_request()
    # Every refusal happens before serve() logs the prediction and counts the request.
    wanted, binary_all = _requested_outputs(body)

    def parse(schema: InputSchema | None) -> Parsed:
        if "predict_proba" in wanted and _served_classes(name) is None:
            raise InputError("output 'predict_proba' is only for classifiers; this model "
                             "has predict")
        return _to_rows(body["inputs"], tail, schema)

    result, _ = serve(name, parse, body={"version": ver} if ver else None, endpoint="v2")
    out, classes = result.output, result.model.classes
    n = len(out.predictions)
    tensors = [("predict", _pred_type(classes, out.predictions), [n], out.predictions)]
    if out.probabilities is not None and classes is not None:
        keys = [str(c) for c in classes]
        flat = [row[k] for row in out.probabilities for k in keys]
        tensors.append(("predict_proba", "FP64", [n, len(keys)], flat))
    outputs, blobs = [], []
    for tname, dtype, shape, data in tensors:
        if wanted and tname not in wanted:
            continue
        entry: dict[str, Any] = {"name": tname, "datatype": dtype, "shape": shape}
        if wanted.get(tname) or binary_all:
            blob = _encode(dtype, data)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _finite(data)
        outputs.append(entry)
    payload = {"model_name": name, "model_version": result.model.version,
               "outputs": outputs, "parameters": {"prediction_ids": result.prediction_ids,
                                                  "arm": result.arm.arm}}
    if "id" in body:
        payload["id"] = body["id"]
    head = fastjson.dumps(payload, default=str)
    headers = result.headers()
    if not blobs:
        return Response(head, mimetype="application/json", headers=headers)
    headers[HEADER] = str(len(head))
    return Response(head + b"".join(blobs), mimetype="application/octet-stream",
                    headers=headers)


def _finite(data: list[Any]) -> list[Any]:
    # JSON has no NaN or Infinity: null, as /predict writes them (a float32 model can
    # overflow to NaN); done here so no fallback encoder can write a bare NaN
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in data]


def _params(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where} must be an object")
    return value


def _encode(dtype: str, data: list[Any]) -> bytes:
    if dtype == "BYTES":
        # text as UTF-8 (surrogatepass: a lone surrogate is not worth a 500); other values
        # as the JSON the same output would carry in JSON mode
        items = [v.encode("utf-8", "surrogatepass") if isinstance(v, str)
                 else fastjson.dumps(v, default=str) for v in data]
        return b"".join(struct.pack("<I", len(b)) + b for b in items)
    return np.asarray(data, dtype=NUMPY[dtype]).tobytes()


instrument(bp, "v2", {"infer"})
