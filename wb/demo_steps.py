"""The demo's heavier steps, each through the product's own service functions.

Runs are trained in-process by the experiment runner (real MLflow runs, registered and
hash-recorded versions); promotions go through four eyes (ada proposes, grace approves);
traffic goes through the real Flask app (auth, validation, logging) with a challenger in
shadow, a drifting second half, and feedback for most predictions.
"""

from __future__ import annotations

import random
from typing import Any

from mlwb.roles import Scope
from mlwb.services import Services
from mlwb.users import Principal

DEMO_MODEL = "breast_cancer_logreg"
TRAFFIC = 400


def as_person(svc: Services, username: str) -> Principal:
    """A demo account acting for itself."""
    user = svc.users.require(username)
    return Principal(user_id=user.id, username=user.username, role=user.role)


def seed_runs(svc: Services) -> None:
    """Several built-in experiments, plus a second version of the demo model."""
    from experiments.runner import RunOptions, run_experiment
    from jobs.demo import seed_runs as seed_builtin_runs

    seed_builtin_runs(svc)
    # A stronger-regularised sibling: the next version of the demo model, the challenger.
    run_experiment(svc, DEMO_MODEL, {"C": 0.05}, RunOptions(tags={"wb.demo": "1"}))


def demo_versions(svc: Services) -> tuple[str, str]:
    """The two newest versions of the demo model: (champion-to-be, challenger-to-be)."""
    from mlwb.aliases import mlflow_client

    versions = sorted(int(v.version) for v in mlflow_client(svc.settings).search_model_versions(
        f"name='{DEMO_MODEL}'"))
    if len(versions) < 2:
        raise RuntimeError(f"the demo needs two versions of {DEMO_MODEL}; found {versions}")
    return str(versions[-2]), str(versions[-1])


def seed_promotions(svc: Services) -> None:
    """v1 champion and v2 challenger (proposed by ada, approved by grace), shadow traffic."""
    from mlwb.promotions import approve, propose, serving_plan
    from mlwb.traffic import set_traffic

    ada, grace = as_person(svc, "ada"), as_person(svc, "grace")
    champion, challenger = demo_versions(svc)
    plan = serving_plan(svc.engine, DEMO_MODEL)
    for version, alias, holder in (
        (champion, "champion", plan.champion), (challenger, "challenger", plan.challenger)
    ):
        if holder != version:
            promo = propose(svc, ada, DEMO_MODEL, version, alias, note="demo")
            approve(svc, grace, promo.id)
    set_traffic(svc, grace, DEMO_MODEL, "shadow")


def seed_traffic(svc: Services) -> None:
    """Predictions through the API (the second half drifts), then feedback for most."""
    from api import create_app
    from experiments.data import load_builtin

    _, token = svc.tokens.create("ada", "demo-traffic", [Scope.predict, Scope.feedback],
                                 as_person(svc, "ada"))
    client = create_app(svc.settings, svc).test_client()
    auth = {"Authorization": f"Bearer {token}"}
    frame = load_builtin("breast_cancer").sample(TRAFFIC, replace=True, random_state=7)
    labels = frame.pop("target").tolist()
    rng = random.Random(7)
    for i, (row, label) in enumerate(zip(frame.to_dict("records"), labels, strict=True)):
        if i >= TRAFFIC // 2:  # drift: tumours measured larger in the second half
            row = {k: (v * 1.35 if "radius" in k or "area" in k else v) for k, v in row.items()}
        resp = client.post(f"/api/models/{DEMO_MODEL}/predict", json={"instances": [row]},
                           headers=auth)
        if resp.status_code != 200:
            raise RuntimeError(f"demo traffic failed: {resp.status_code} {resp.get_json()}")
        body: dict[str, Any] = resp.get_json()
        pid = body["predictions"][0]["prediction_id"]
        if rng.random() < 0.75:
            client.post("/api/feedback", json={"prediction_id": pid, "label": int(label)},
                        headers=auth)
