"""Specs of the model registry endpoints: promotions, rollback, traffic, drift, explain."""

from __future__ import annotations

from api.openapi import component, json_content, obj, operation, path_param
from mlwb.aliases import ALIAS_RE, MODEL_RE
from mlwb.explain import MAX_ROWS
from mlwb.roles import Role, Scope

NULL_STR = {"type": ["string", "null"]}
TIME = {"type": "string", "format": "date-time"}
VERSION = {"type": "string", "pattern": "^[0-9]+$", "description": "model version number"}
ALIAS = {"type": "string", "pattern": ALIAS_RE.pattern,
         "not": {"anyOf": [{"const": "latest"}, {"pattern": "^v[0-9]+$"}]}}
VERSION_IN = {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 999_999_999},
                        {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"}]}
WEIGHTS = {"type": "object", "additionalProperties": {"type": "number"}}

path_param("name", {"type": "string", "pattern": MODEL_RE.pattern}, "registered model name")
path_param("alias", ALIAS, "model alias, e.g. champion or challenger")
path_param("promotion_id", {"type": "integer", "minimum": 1}, "promotion id")
path_param("drift_id", {"type": "integer", "minimum": 1}, "alias drift id")
path_param("action", {"type": "string", "enum": ["confirm", "revert"]},
           "confirm: serve MLflow's version; revert: put MLflow back")

PROMOTION = component("Promotion", obj({
    "id": {"type": "integer"}, "model": {"type": "string"}, "alias": {"type": "string"},
    "version": VERSION, "proposed_by": {"type": "string"}, "proposed_at": TIME,
    "status": {"type": "string", "enum": ["proposed", "approved", "rejected", "superseded"]},
    "approved_by": NULL_STR, "approved_at": {"type": ["string", "null"], "format": "date-time"},
    "note": {"type": "string"},
}, required=("id", "model", "alias", "version", "proposed_by", "proposed_at", "status",
             "approved_by", "approved_at", "note")))
MOVE = component("AliasMove", obj({
    "id": {"type": "integer"}, "model": {"type": "string"}, "alias": {"type": "string"},
    "version": NULL_STR, "previous_version": NULL_STR, "moved_at": TIME,
    "moved_by": {"type": "string"},
    "reason": {"type": "string", "enum": ["promotion", "rollback", "drift_confirmed"]},
    "promotion_id": {"type": ["integer", "null"]},
}, required=("id", "model", "alias", "version", "previous_version", "moved_at", "moved_by",
             "reason", "promotion_id")))
PLAN = component("ServingPlan", obj({
    "champion": NULL_STR, "challenger": NULL_STR,
    "mode": {"type": "string", "enum": ["single", "split", "shadow"]},
    "weights": WEIGHTS, "sticky": {"type": "boolean"},
    "blocked": {"type": "array", "items": {"type": "string"},
                "description": "versions moved to in MLflow directly, not served"},
}, required=("champion", "challenger", "mode", "weights", "sticky", "blocked")))
POLICY_FIELDS = {"model": {"type": "string"},
                 "mode": {"type": "string", "enum": ["single", "split", "shadow"]},
                 "weights": WEIGHTS, "sticky": {"type": "boolean"}, "set_by": NULL_STR,
                 "set_at": {"type": ["string", "null"], "format": "date-time"}}
POLICY = component("TrafficPolicy", obj(POLICY_FIELDS, required=tuple(POLICY_FIELDS)))
POLICY_AND_PLAN = component("TrafficPolicyAndPlan", obj(
    {**POLICY_FIELDS, "plan": PLAN}, required=(*POLICY_FIELDS, "plan")))
DRIFT = component("AliasDrift", obj({
    "id": {"type": "integer"}, "model": {"type": "string"}, "alias": {"type": "string"},
    "mlflow_version": NULL_STR, "recorded_version": NULL_STR, "detected_at": TIME,
    "status": {"type": "string", "enum": ["open", "confirmed", "reverted", "gone"]},
    "resolved_by": NULL_STR, "resolved_at": {"type": ["string", "null"], "format": "date-time"},
}, required=("id", "model", "alias", "mlflow_version", "recorded_version", "detected_at",
             "status", "resolved_by", "resolved_at")))
ALIASES = {"type": "object", "additionalProperties": {"type": "string"}}
EMPTY = json_content(obj({}))

operation("get", "/api/models", summary="Registered models, their aliases and traffic mode",
          tag="models", responses={200: ("Models", obj({"models": {"type": "array", "items": obj({
              "name": {"type": "string"}, "mlflow_aliases": ALIASES, "aliases": ALIASES,
              "mode": {"type": "string"}, "blocked": {"type": "array",
                                                      "items": {"type": "string"}},
          }, required=("name", "mlflow_aliases", "aliases", "mode", "blocked"))}},
              required=("models",)))})
operation("get", "/api/models/{name}/history",
          summary="Alias moves (newest first), proposals, traffic policy, serving plan",
          tag="models", errors=(400,), responses={200: ("History", obj({
              "model": {"type": "string"}, "aliases": ALIASES,
              "moves": {"type": "array", "items": MOVE},
              "promotions": {"type": "array", "items": PROMOTION},
              "traffic": POLICY, "plan": PLAN,
          }, required=("model", "aliases", "moves", "promotions", "traffic", "plan")))})
operation("post", "/api/models/{name}/promotions",
          summary="Propose a version for an alias (four eyes: another approver approves)",
          tag="models", role=Role.scientist, scope=Scope.promote, errors=(404, 409),
          body=json_content(obj({"version": VERSION_IN, "alias": ALIAS,
                                 "note": {"type": "string", "maxLength": 2000}},
                                required=("version",))),
          responses={201: ("Proposed", PROMOTION)})
operation("get", "/api/promotions", summary="Proposals, newest first", tag="models",
          errors=(400,),
          params=[{"name": "model", "in": "query", "required": False,
                   "schema": {"type": "string"}},
                  {"name": "status", "in": "query", "required": False, "schema": {
                      "type": "string",
                      "enum": ["proposed", "approved", "rejected", "superseded"]}}],
          responses={200: ("Proposals", obj({"promotions": {"type": "array",
                                                            "items": PROMOTION}},
                                            required=("promotions",)))})
operation("post", "/api/promotions/{promotion_id}/approve",
          summary="Approve someone else's proposal: the alias moves in MLflow and the record",
          tag="models", role=Role.approver, scope=Scope.promote, errors=(404, 409),
          body=EMPTY, body_required=False, responses={200: ("Approved", PROMOTION)})
operation("post", "/api/promotions/{promotion_id}/reject",
          summary="Reject a proposal (approver) or withdraw your own", tag="models",
          role=Role.scientist, scope=Scope.promote, errors=(404, 409), body_required=False,
          body=json_content(obj({"note": {"type": "string", "maxLength": 2000}})),
          responses={200: ("Rejected", PROMOTION)})
operation("post", "/api/models/{name}/aliases/{alias}/rollback",
          summary="Move an alias back to its previous holder", tag="models",
          role=Role.approver, scope=Scope.promote, errors=(404, 409), body_required=False,
          description="With from_version, only if the alias still holds that version (else "
                      "409, nothing moves): two approvers rolling back at once roll back "
                      "once.",
          body=json_content(obj({"reason": {"type": "string", "maxLength": 2000},
                                 "from_version": VERSION_IN})),
          responses={200: ("The move made", MOVE)})
operation("get", "/api/models/{name}/traffic", summary="Traffic policy and serving plan",
          tag="models", errors=(400,), responses={200: ("Policy", POLICY_AND_PLAN)})
STICKY = {"type": "boolean", "description": "keep a caller's traffic key on one arm"}
operation("put", "/api/models/{name}/traffic",
          summary="Set single, split (weighted) or shadow traffic", tag="models",
          role=Role.approver, scope=Scope.promote, errors=(404, 409),
          description="Split weights are normalised to sum to 1; split and shadow need a "
                      "challenger (409 until one is promoted).",
          body=json_content({"oneOf": [
              obj({"mode": {"type": "string", "enum": ["single", "shadow"]},
                   "weights": {"anyOf": [obj({"champion": {"type": "number"}}),
                                         {"type": "null"}]}, "sticky": STICKY},
                  required=("mode",)),
              obj({"mode": {"const": "split"},
                   "weights": obj({arm: {"type": "number", "minimum": 1e-6,
                                         "maximum": 1e6} for arm in ("champion",
                                                                     "challenger")},
                                  required=("champion", "challenger")),
                   "sticky": STICKY}, required=("mode", "weights")),
          ]}),
          responses={200: ("The policy set", POLICY_AND_PLAN)})
operation("get", "/api/models/{name}/drift",
          summary="Compare MLflow's aliases with the record now; list differences",
          tag="models", errors=(400, 404),
          responses={200: ("Open differences and recent history", obj({
              "open": {"type": "array", "items": DRIFT},
              "history": {"type": "array", "items": DRIFT}}, required=("open", "history")))})
operation("post", "/api/drift/{drift_id}/{action}",
          summary="Confirm or revert an alias moved in MLflow directly", tag="models",
          role=Role.approver, scope=Scope.promote, errors=(404, 409), body=EMPTY,
          body_required=False, responses={200: ("Decided", DRIFT)})

FEATURES = {"type": "object", "minProperties": 1,
            "additionalProperties": {"type": ["number", "string", "boolean"]}}
operation("post", "/api/models/{name}/explain",
          summary="Per-feature attributions (Shapley values) that sum to the model's output",
          tag="serving", role=Role.viewer, scope=Scope.predict, errors=(404, 422),
          description="The output is the prediction (regression) or the probability of the "
                      "predicted class; the base value is its mean over a background sample "
                      "of the version's reference data. Champion by default; asking for a "
                      "version or alias needs the scientist role, as for predictions.",
          body=json_content({"allOf": [
              obj({"instances": {"type": "array", "items": FEATURES, "minItems": 1,
                                 "maxItems": MAX_ROWS},
                   "version": VERSION_IN, "alias": ALIAS}, required=("instances",)),
              {"not": {"required": ["version", "alias"]}}]}),
          responses={200: ("Attributions per row", obj({
              "model": {"type": "string"}, "version": VERSION, "alias": NULL_STR,
              "background_rows": {"type": "integer"},
              "background_source": {"type": "string", "enum": ["reference", "input_example"]},
              "explanations": {"type": "array", "items": obj({
                  "predicted": {"type": ["number", "string", "boolean", "integer"]},
                  "output": {"type": "string"}, "base_value": {"type": "number"},
                  "output_value": {"type": "number"}, "method": {"type": "string"},
                  "attributions": {"type": "object",
                                   "additionalProperties": {"type": "number"}},
              }, required=("predicted", "output", "base_value", "output_value", "method",
                           "attributions"))},
          }, required=("model", "version", "alias", "background_rows", "background_source",
                       "explanations")))})

operation("get", "/openapi.json", summary="This document", tag="meta",
          responses={200: ("The OpenAPI document", {"type": "object"})})
