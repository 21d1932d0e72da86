"""Specs of the jobs and experiments endpoints."""

from __future__ import annotations

from api.openapi import component, json_content, obj, operation, path_param
from jobs.service import STATUS_NAMES
from mlwb.roles import Role, Scope

NULL_STR = {"type": ["string", "null"]}
path_param("job_id", {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}, "job id")

JOB = component("Job", obj({
    "id": {"type": "string"}, "experiment": {"type": "string"}, "status": {"type": "string"},
    "queue": {"type": "string"}, "params": {"type": "object"}, "submitted_by": NULL_STR,
    "created_at": NULL_STR, "started_at": NULL_STR, "ended_at": NULL_STR, "run_id": NULL_STR,
    "runs": {"type": "array", "items": {"type": "string"}}, "attempts": {"type": "integer"},
    "progress": {"type": "object"}, "error": NULL_STR, "result": {"type": ["object", "null"]},
    "sweep_id": NULL_STR,
}, required=("id", "experiment", "status", "queue", "params")))
operation("post", "/api/jobs", summary="Submit a training job", tag="jobs",
          role=Role.scientist, scope=Scope.jobs, errors=(404, 422),
          description="202 with the queued job; with `wait: true`, 200 with its final state "
                      "(up to 10 minutes).",
          body=json_content(obj({
              "experiment": {"type": "string", "minLength": 1,
                             "description": "see GET /api/experiments"},
              "params": {"type": "object", "description": "the experiment's parameters"},
              "queue": {"type": "string"}, "timeout": {"type": ["integer", "null"]},
              "retries": {"type": ["integer", "null"]}, "wait": {"type": ["boolean", "null"]},
          }, required=("experiment",))),
          responses={202: ("Queued", JOB), 200: ("Finished (wait)", JOB)})
operation("get", "/api/jobs", summary="The newest jobs", tag="jobs", errors=(400, 422),
          params=[{"name": "status", "in": "query", "required": False,
                   "schema": {"type": "string",
                              "enum": ["", *sorted(set(STATUS_NAMES.values()))]},
                   "description": "only jobs in this state (empty: all)"},
                  {"name": "limit", "in": "query", "required": False,
                   "schema": {"type": "integer"}, "description": "1..500"}],
          responses={200: ("Jobs", obj({"jobs": {"type": "array", "items": JOB},
                                        "count": {"type": "integer"}},
                                       required=("jobs", "count")))})
operation("get", "/api/jobs/{job_id}", summary="One job", tag="jobs", errors=(404,),
          responses={200: ("The job", JOB)})
operation("post", "/api/jobs/{job_id}/cancel", summary="Cancel or stop a job", tag="jobs",
          role=Role.scientist, scope=Scope.jobs, errors=(404, 409),
          responses={200: ("The job", JOB)})
operation("get", "/api/jobs/{job_id}/logs", summary="A job's log lines", tag="jobs",
          errors=(404,), responses={200: ("Log lines", obj({
              "job_id": {"type": "string"},
              "lines": {"type": "array", "items": {"type": "string"}}},
              required=("job_id", "lines")))})
EXPERIMENT = {"name": {"type": "string"}, "framework": {"type": "string"},
              "task": {"type": "string"}, "data": {"type": "string"},
              "description": {"type": "string"}}
operation("get", "/api/experiments", summary="Every registered experiment", tag="jobs",
          responses={200: ("Experiments", obj({"experiments": {"type": "array", "items": obj(
              EXPERIMENT, required=tuple(EXPERIMENT))}}, required=("experiments",)))})
operation("get", "/api/experiments/{name}", summary="One experiment and its parameters",
          tag="jobs", errors=(404,), responses={200: ("The experiment", obj({
              **EXPERIMENT, "params": {"type": "array", "items": {"type": "object"}}},
              required=(*EXPERIMENT, "params")))})
