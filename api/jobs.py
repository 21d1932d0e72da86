"""Jobs and experiments over HTTP: the same service functions as `wb run` and the workbench."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from api.auth import client_ip, requires, services
from api.events import json_body
from mlwb.errors import InputError
from mlwb.roles import Role, Scope

bp = Blueprint("jobs", __name__)

SUBMIT_FIELDS = {"experiment", "params", "queue", "timeout", "retries", "wait"}


def _int_arg(name: str, default: int, most: int) -> int:
    try:
        return max(1, min(int(request.args.get(name, default)), most))
    except ValueError:
        raise InputError(f"{name} must be an integer") from None


@bp.post("/api/jobs")
@requires(Role.scientist, Scope.jobs, "submitting jobs")
def submit_job() -> tuple[Response, int]:
    """Submit a training job: {"experiment": NAME, "params": {...}, "queue", "timeout",
    "retries"}; 202 with the job (200 with its final state when "wait" is true)."""
    from jobs.service import submit

    body = json_body()
    unknown = sorted(set(body) - SUBMIT_FIELDS)
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; send "
                         f"{', '.join(sorted(SUBMIT_FIELDS))}", field=unknown[0])
    experiment = body.get("experiment")
    if not isinstance(experiment, str) or not experiment:
        raise InputError('send "experiment": the name of an experiment (GET /api/experiments)',
                         field="experiment")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise InputError('"params" must be an object of name: value', field="params")
    for key in ("timeout", "retries"):
        if body.get(key) is not None and (isinstance(body[key], bool) or
                                          not isinstance(body[key], int)):
            raise InputError(f'"{key}" must be an integer', field=key)
    wait = body.get("wait") is True
    info = submit(services(), g.principal, experiment, params,
                  queue_name=str(body.get("queue", "auto")), timeout=body.get("timeout"),
                  retries=body.get("retries"), ip=client_ip(), wait=wait, wait_seconds=600)
    return jsonify(info.to_dict()), 200 if wait else 202


@bp.get("/api/jobs")
@requires(Role.viewer, Scope.read, "reading jobs")
def list_jobs() -> Response:
    """The newest jobs (``?status=running&limit=50``)."""
    from jobs.service import list_jobs as list_

    items = list_(services(), g.principal, request.args.get("status"),
                  _int_arg("limit", 50, 500))
    return jsonify({"jobs": [i.to_dict() for i in items], "count": len(items)})


@bp.get("/api/jobs/<job_id>")
@requires(Role.viewer, Scope.read, "reading jobs")
def get_job(job_id: str) -> Response:
    """One job: status, progress, run id, result or error."""
    from jobs.service import get_job as get

    return jsonify(get(services(), g.principal, job_id).to_dict())


@bp.post("/api/jobs/<job_id>/cancel")
@requires(Role.scientist, Scope.jobs, "cancelling jobs")
def cancel_job(job_id: str) -> Response:
    """Cancel a queued job or stop a running one."""
    from jobs.service import cancel_job as cancel

    return jsonify(cancel(services(), g.principal, job_id, ip=client_ip()).to_dict())


@bp.get("/api/jobs/<job_id>/logs")
@requires(Role.viewer, Scope.read, "reading job logs")
def job_logs(job_id: str) -> Response:
    """The job's log lines."""
    from jobs.service import job_log

    lines = job_log(services(), g.principal, job_id)
    return jsonify({"job_id": job_id, "lines": lines})


@bp.get("/api/experiments")
@requires(Role.viewer, Scope.read, "reading experiments")
def experiments() -> Response:
    """Every registered experiment."""
    from experiments.registry import all_experiments

    return jsonify({"experiments": [
        {"name": e.name, "framework": e.framework, "task": e.task, "data": e.data,
         "description": e.description} for e in all_experiments()]})


@bp.get("/api/experiments/<name>")
@requires(Role.viewer, Scope.read, "reading experiments")
def experiment(name: str) -> Response:
    """One experiment's parameters: type, default, range."""
    from experiments.registry import describe, get

    exp = get(name)
    params: list[dict[str, Any]] = describe(name)
    return jsonify({"name": exp.name, "framework": exp.framework, "task": exp.task,
                    "data": exp.data, "description": exp.description, "params": params})
