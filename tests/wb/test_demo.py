"""`wb demo` seeds only what the product really produced, once."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import pytest
from click.testing import CliRunner

from mlwb.promotions import serving_plan
from mlwb.settings import Settings
from tests.factories import cli_invoker, land
from wb import context
from wb.demo_steps import DEMO_MODEL, TRAFFIC
from wb.main import cli


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for _ in cli_invoker(settings, monkeypatch):
        yield


@pytest.mark.slow
def test_demo_seeds_real_runs_models_traffic_and_feedback_once(env: None) -> None:
    first = CliRunner().invoke(cli, ["demo", "--if-new"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    svc = context.services()
    land(svc)
    s = svc.settings
    assert (s.data_dir / "admin-password.txt").stat().st_mode & 0o077 == 0
    assert {u.username for u in svc.users.list()} >= {"admin", "ada", "grace"}
    client = mlflow.MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.registry_uri)
    runs = [r for e in client.search_experiments()
            for r in client.search_runs([e.experiment_id])]
    assert len(runs) >= 7 and all(r.info.status == "FINISHED" for r in runs)
    plan = serving_plan(svc.engine, DEMO_MODEL)
    assert (plan.champion, plan.challenger, plan.mode) == ("1", "2", "shadow")
    counts = dict(svc.lake.query("SELECT arm, count(*) FROM predictions GROUP BY arm"))
    assert counts.get("shadow") == TRAFFIC
    assert sum(v for k, v in counts.items() if k != "shadow") == TRAFFIC
    labelled = svc.lake.query("SELECT count(*) FROM feedback")[0][0]
    assert TRAFFIC * 0.5 < labelled < TRAFFIC
    actions = {r[0] for r in svc.lake.query("SELECT DISTINCT action FROM audit")}
    assert {"user.added", "promotion.proposed", "promotion.approved", "traffic.set"} <= actions

    again = CliRunner().invoke(cli, ["demo", "--if-new"], catch_exceptions=False)
    assert "already seeded" in again.output
    # Interrupted after training (its step remembered): a rerun resumes, trains nothing
    # again and promotes nothing twice.
    import sqlalchemy as sa

    from mlwb.db import facts

    with svc.engine.begin() as conn:
        conn.execute(sa.delete(facts).where(facts.c.key.in_(
            ["demo_seeded", "demo_seeded:step1", "demo_seeded:step2"])))
    resumed = CliRunner().invoke(cli, ["demo"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert "training runs" not in resumed.output
    assert serving_plan(svc.engine, DEMO_MODEL).champion == "1"
    assert len([r for e in client.search_experiments()
                for r in client.search_runs([e.experiment_id])]) == len(runs)
