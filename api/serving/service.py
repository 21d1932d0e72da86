"""One prediction request, end to end: choose a version, validate, predict, shadow, log.

Every face of the serving API (``/predict``, MLflow ``/invocations``, v2 ``/infer``) parses
its own body shape into rows and calls :func:`serve`, so each gets the same validation,
traffic split, signed ids, prediction log and metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from flask import Blueprint, Flask, Response, current_app, g, request

from api.serving.metrics import ServingMetrics, metrics_of
from api.serving.model import LoadedModel
from api.serving.output import Output
from api.serving.runtime import Arm, ModelRuntime
from api.serving.schema import InputSchema, Parsed, Unsupported
from api.serving.shipper import Shipper, client_for
from mlwb import fastjson
from mlwb.errors import InputError, StoreError, Unprocessable
from mlwb.prediction_ids import PredictionIds, new_request_id
from mlwb.predictions import row_id
from mlwb.ratelimit import FixedWindow
from mlwb.roles import Role, Scope
from mlwb.services import Services
from mlwb.tables import canonical_json
from mlwb.users import Principal

log = logging.getLogger(__name__)

RATE_WINDOW = 60  # seconds of the per-token prediction rate limit


@dataclass
class Serving:
    """What the serving path keeps per process (in ``app.extensions["wb_serving"]``)."""

    runtime: ModelRuntime
    ids: PredictionIds
    metrics: ServingMetrics
    limiter: FixedWindow
    shipper: Shipper  # counts hits and spools rows; ships both in the background
    log_predictions: bool = True  # off only for the benchmark's logging-cost comparison
    over_until: dict[str, float] = field(default_factory=dict)  # caller -> window end

    def check_rate(self, caller: str) -> None:
        """Refuse early a caller this process already saw over its limit in this window."""
        until = self.over_until.get(caller)
        if until is not None:
            if time.time() < until:
                self._refuse()
            self.over_until.pop(caller, None)

    def count_and_log(self, call: Call, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """Count the hit (429 over the limit) and spool ``rows`` before the answer goes out
        (:mod:`api.serving.shipper` ships both); 503 while the log cannot reach Redis."""
        call.counted = True
        caller = call.caller
        shipper = self.shipper
        if shipper.failing is not None:
            raise StoreError(f"the prediction log at Redis is unavailable ({shipper.failing})"
                             "; nothing was recorded, retry the request")
        if shipper.hit(caller) > self.limiter.limit:
            self._mark_over(caller)
            self._refuse()
        if rows:
            try:
                shipper.record([(table, spool_json(row)) for table, row in rows])
            except OSError as exc:
                shipper.unhit(caller)  # our failure: the retry we ask for is the hit
                raise StoreError(f"the prediction log's spool could not be written ({exc}); "
                                 "nothing was recorded, retry the request") from exc

    def count_refused(self, caller: str) -> None:
        """Count a request refused before it reached the log (a bad body, an unknown model):
        those count against the caller's limit too, or a flood of them would be free."""
        try:
            count = self.shipper.hit_now(caller)
        except redis.RedisError:
            return  # the request already failed for its own reason; say that one
        if count > self.limiter.limit:
            self._mark_over(caller)

    def _mark_over(self, caller: str) -> None:
        """Refuse ``caller`` in this process without a round trip until its window ends."""
        window = self.limiter.window
        self.over_until[caller] = (time.time() // window + 1) * window

    def _refuse(self) -> None:
        raise self.limiter.refusal("prediction requests for this token")


def serving(app: Flask | None = None) -> Serving:
    """The process's serving state, built on first use."""
    app = app or current_app
    found = app.extensions.get("wb_serving")
    if found is None:
        svc: Services = app.extensions["wb"]
        s = svc.settings
        limiter = FixedWindow(svc.redis, "predict", s.predict_rate_limit, RATE_WINDOW)
        found = Serving(
            runtime=ModelRuntime(s, svc.engine),
            ids=PredictionIds(s.resolved_secret_key()),
            metrics=metrics_of(app.extensions),
            limiter=limiter,
            shipper=Shipper(client_for(s.effective_redis_url), svc.sink.stream, limiter,
                            s.spool_dir),
        )
        found = app.extensions.setdefault("wb_serving", found)
    return found  # type: ignore[no-any-return]


@dataclass
class Call:
    """Who asks, and for what: all :func:`serve_call` reads of a request, so the WSGI fast
    path (:mod:`api.serving.fastpath`) serves without Flask's request context."""

    principal: Principal
    traffic_key: str | None = None  # sticky split key
    version: str | None = None  # asked for (scientist+; checked by the caller)
    alias: str | None = None
    labels: tuple[str, str, str, str] | None = None  # model, version, arm, endpoint: set
    # once the version is chosen, for the metrics of whatever the request ends in
    counted: bool = False  # the rate-limit hit is counted (refusals must not count again)

    @property
    def caller(self) -> str:
        """The identity the rate limit and the log use."""
        return caller_key(self.principal)


@dataclass
class Result:
    """A served request: the arm that answered, per-row ids and outputs."""

    model: LoadedModel
    arm: Arm
    request_id: str
    prediction_ids: list[str]
    output: Output
    timings: dict[str, float]

    def headers(self) -> dict[str, str]:
        """Response headers naming the request and the version that answered."""
        rid = self.prediction_ids[0] if len(self.prediction_ids) == 1 else self.request_id
        timing = ", ".join(f"{k};dur={v:.3f}" for k, v in self.timings.items())
        return {"X-Request-ID": rid, "X-Model-Version": self.model.version,
                "X-Model-Arm": self.arm.arm, "Server-Timing": timing}


def json_object() -> dict[str, Any]:
    """The request's JSON object; 415 for another media type, 400 for bad JSON."""
    if not request.is_json:
        raise Unsupported(f"send the body as JSON with `Content-Type: application/json` (got "
                          f"{request.content_type or 'no content type'})")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object, e.g. "
                         '{"instances": [{"column": value, ...}]}')
    return body


def caller_key(principal: Principal) -> str:
    """The identity a rate limit and the log use: the token, else the person."""
    return principal.token_id or f"user:{principal.user_id}"


def requested_target(principal: Principal, body: dict[str, Any] | None = None,
                     ) -> tuple[str | None, str | None]:
    """``(version, alias)`` a caller asked for (query string or body); scientist+ only."""
    args = request.args if request.query_string else {}  # no query string: nothing to parse
    version = args.get("version") or (body or {}).get("version")
    alias = args.get("alias") or (body or {}).get("alias")
    if version is None and alias is None:
        return None, None
    principal.require(Role.scientist, Scope.predict, "asking for a specific model version")
    return (str(version) if version is not None else None,
            str(alias) if alias is not None else None)


def traffic_key(body: dict[str, Any] | None = None) -> str | None:
    """The caller's sticky traffic key: ``X-Traffic-Key`` header or ``traffic_key`` field."""
    return traffic_key_of(request.headers.get("X-Traffic-Key"), body)


def traffic_key_of(header: str | None, body: dict[str, Any] | None) -> str | None:
    """The sticky key from the header's value, else the body's ``traffic_key`` field."""
    key = header or (body or {}).get("traffic_key")
    return str(key)[:256] if key else None


def serve(
    name: str,
    parse: Callable[[InputSchema | None], Parsed],
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    endpoint: str = "predict",
) -> tuple[Result, Parsed]:
    """Serve the current Flask request for model ``name``; ``parse`` turns the body into
    checked rows."""
    state = serving()
    principal: Principal = g.principal
    state.check_rate(caller_key(principal))
    version, alias = requested_target(principal, body)
    call = g.serving_call = Call(principal, traffic_key(body), version, alias)
    return serve_call(state, name, parse, call, params=params, endpoint=endpoint)


def serve_call(
    state: Serving,
    name: str,
    parse: Callable[[InputSchema | None], Parsed],
    call: Call,
    *,
    params: dict[str, Any] | None = None,
    endpoint: str = "predict",
) -> tuple[Result, Parsed]:
    """Serve one request for model ``name``: choose the version, validate, predict, shadow,
    count and log. The caller has checked the caller's rate and its right to ``call``'s
    version or alias."""
    started = time.perf_counter()
    principal = call.principal
    primary, shadow = state.runtime.choose(name, call.traffic_key, call.version, call.alias)
    model = state.runtime.model(name, primary.version)
    call.labels = (name, model.version, primary.arm, endpoint)
    t0 = time.perf_counter()
    parsed = parse(model.schema)
    t1 = time.perf_counter()
    pre_parse = parsed.preprocess_ms  # frame built while parsing (general path)
    output = model.predict(parsed, params)
    t2 = time.perf_counter()
    request_id = new_request_id()
    ids = state.ids.for_request(request_id, len(parsed.rows))
    # The log stage's own time cannot be inside the row it writes: it is in Server-Timing.
    pre = parsed.preprocess_ms
    timings = {"validate": (t1 - t0) * 1e3 - pre_parse, "preprocess": pre,
               "model": (t2 - t1) * 1e3 - (pre - pre_parse)}
    result = Result(model, primary, request_id, ids, output, timings)
    shadow_rows: list[tuple[str, dict[str, Any]]] = []
    if shadow is not None:
        shadow_rows = _shadow(state, name, shadow, parsed, result, principal, params)
    t3 = time.perf_counter()
    rows = (_rows(result, parsed, principal, started, primary) + shadow_rows
            if state.log_predictions else [])
    state.count_and_log(call, rows)  # the rate-limit hit is counted even with the log off
    timings["log"] = (time.perf_counter() - t3) * 1e3
    return result, parsed


def spool_json(row: dict[str, Any]) -> bytes:
    """A row's spool text. orjson with sorted keys: each JSON column's text is then its
    stored form, and the ingest lands the shipment column-wise (:mod:`mlwb.columnar`).
    What only ``json`` writes (an integer beyond 64 bits, a lone surrogate) is other text
    (escapes, float forms): a leading space sends its shipment the row-by-row way."""
    try:
        return orjson.dumps(row, default=str, option=fastjson.SORTED)
    except TypeError:
        return b" " + _json_only(row)


def _json_only(row: dict[str, Any]) -> bytes:
    """What only ``json`` writes. Rows of a model without a signature hold whatever the
    caller sent: nesting deeper than either writer goes (the body parser takes 1,024
    levels), or keys neither writes, are refused before anything of the request is
    spooled."""
    try:
        return canonical_json(row).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise Unprocessable(
            "the inputs cannot be recorded in the prediction log (nested too deep, or "
            f"keys that are not text: {type(exc).__name__}); nothing was recorded. Send "
            "flatter rows, or register the model with a signature") from None


def _rows(result: Result, parsed: Parsed, principal: Principal, started: float,
          arm: Arm) -> list[tuple[str, dict[str, Any]]]:
    """Prediction rows in stream form (ids, ts and JSON built here, validated by shape)."""
    now_us = int(time.time() * 1_000_000)
    latency = (time.perf_counter() - started) * 1e3
    out = result.output
    probs = out.probabilities
    model = result.model
    caller = principal.actor
    rows = []
    for i, pid in enumerate(result.prediction_ids):
        outputs: dict[str, Any] = {"prediction": out.predictions[i]}
        if probs is not None:
            outputs["probabilities"] = probs[i]
        rows.append(("predictions", {
            "id": row_id(pid, arm.arm), "ts": now_us, "prediction_id": pid,
            "request_id": result.request_id, "model": model.name, "version": model.version,
            "alias": arm.alias, "arm": arm.arm, "caller": caller, "inputs": parsed.rows[i],
            "outputs": outputs, "latency_ms": latency, "timings": result.timings,
            "run_id": model.run_id,
        }))
    return rows


def _shadow(state: Serving, name: str, arm: Arm, parsed: Parsed, primary: Result,
            principal: Principal, params: dict[str, Any] | None
            ) -> list[tuple[str, dict[str, Any]]]:
    """Score the challenger on the same rows; its output is logged, never returned."""
    started = time.perf_counter()
    try:
        model = state.runtime.model(name, arm.version)
        output = model.predict(parsed, params)
    except Exception:  # the shadow must never fail the caller's request
        log.warning("shadow %s v%s failed", name, arm.version, exc_info=True)
        return []
    took = (time.perf_counter() - started) * 1e3
    result = Result(model, arm, primary.request_id, primary.prediction_ids, output,
                    {"model": took})
    state.metrics.observe(name, model.version, "shadow", "shadow", 200, took / 1e3)
    return _rows(result, parsed, principal, started, arm)


def body_outputs(result: Result) -> list[dict[str, Any]]:
    """Per-row response objects: prediction id, prediction, probabilities."""
    out = result.output
    probs = out.probabilities
    rows = []
    for i, pid in enumerate(result.prediction_ids):
        row: dict[str, Any] = {"prediction_id": pid, "prediction": out.predictions[i]}
        if probs is not None:
            row["probabilities"] = probs[i]
        rows.append(row)
    return rows


def observe_response(status: int) -> None:
    """Count a finished serving request (called from the blueprints' after_request)."""
    started = g.get("serving_started")
    if started is None:
        return
    # A request refused before its model was resolved (no token, unknown model, over its
    # rate) is counted without a model label: names from URLs would let any caller add
    # series without limit.
    call: Call | None = g.get("serving_call")
    labels = (call.labels if call else None) or ("", "", "", g.get("serving_endpoint", ""))
    model, version, arm, endpoint = labels
    state = serving()
    state.metrics.observe(model, version, arm, endpoint, status,
                          time.perf_counter() - started)
    principal = g.get("principal")
    if 400 <= status < 500 and status != 429 and principal is not None and not (
            call and call.counted):
        state.count_refused(caller_key(principal))


def instrument(bp: Blueprint, endpoint: str, views: set[str]) -> None:
    """Time and count every response of ``views`` on ``bp`` (errors included)."""

    @bp.before_request
    def _start() -> None:
        if request.endpoint and request.endpoint.rsplit(".", 1)[-1] in views:
            g.serving_started = time.perf_counter()
            g.serving_endpoint = endpoint

    @bp.after_request
    def _count(resp: Response) -> Response:
        observe_response(resp.status_code)
        return resp
