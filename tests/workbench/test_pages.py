"""The workbench pages under streamlit's AppTest, signed in, against one seeded stack per
module (real Redis, lake, state DB, MLflow store): every page shows true data."""

from __future__ import annotations

import re

from mlwb.users import operator
from tests.workbench.conftest import Seeded, cookie_for, page, text


def test_a_forged_or_foreign_cookie_is_not_a_sign_in(seeded: Seeded) -> None:
    other = seeded.settings.model_copy(update={"secret_key": "another-secret-key-0123456789"})
    for cookie in ("garbage", cookie_for(other, seeded.admin)):
        at = page(cookie=cookie)
        assert "/login?next=" in text(at)
        assert not at.metric


def test_overview_counts_what_really_landed(seeded: Seeded) -> None:
    at = page(cookie=cookie_for(seeded.settings, seeded.admin))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "3"
    assert metrics["Events"] == "7"
    # three user.added and one job.submitted (the test's own sign-in is not an API login)
    assert metrics["Audit entries"] == "4"
    assert metrics["Job events"] == "4"
    assert metrics["Ingest backlog"] == "0"
    kinds = at.dataframe[0].value
    assert list(kinds["kind"]) == ["prediction"] and list(kinds["events"]) == [7]
    assert "Signed in as **ada** (admin)" in [c.value for c in at.sidebar.caption]
    assert re.search(r"Lake version [1-9]\d*, last landed 20\d\d-", text(at))


def test_audit_page_lists_entries_filters_and_verifies_the_chain(seeded: Seeded) -> None:
    at = page("pages/audit.py", cookie_for(seeded.settings, seeded.admin))
    assert "Hash chain intact: 4 entries" in text(at)
    entries = at.dataframe[0].value
    assert list(entries["action"]) == ["job.submitted"] + ["user.added"] * 3
    assert list(entries["target"]) == [f"job:{seeded.job_id}"] + [
        f"user:{u.id}:{u.username}" for u in (seeded.leaver, seeded.viewer, seeded.admin)]
    at.text_input[0].input("auth.").run()
    assert not at.dataframe and "No audit entries match" in text(at)
    at.text_input[0].input("user.add").run()
    at.text_input[1].input("cli:test").run()
    assert len(at.dataframe[0].value) == 3


def test_audit_page_needs_an_approver(seeded: Seeded) -> None:
    at = page("pages/audit.py", cookie_for(seeded.settings, seeded.viewer))
    assert at.error and "approver" in at.error[0].value
    assert not at.dataframe


def test_disabling_a_user_ends_their_workbench_session(seeded: Seeded) -> None:
    cookie = cookie_for(seeded.settings, seeded.leaver)
    assert page(cookie=cookie).metric
    seeded.svc.users.set_active("lee", False, operator("test"))
    at = page(cookie=cookie)
    assert "/login?next=" in text(at) and not at.metric


def test_runs_page_compares_runs_and_charts_a_metric(seeded: Seeded) -> None:
    at = page("pages/runs.py", cookie_for(seeded.settings, seeded.viewer))
    runs = at.dataframe[0].value
    assert set(runs["run_id"]) == set(seeded.run_ids)
    assert set(runs["run_name"]) == {"lr-0.1", "lr-0.01"}
    assert list(runs.columns[:5]) == ["run_name", "experiment", "status", "metrics.loss",
                                      "params.lr"]
    assert set(runs["metrics.loss"]) == {1.0 / (3 + 0.1), 1.0 / (3 + 0.01)}  # the last step
    assert at.selectbox[0].value == "loss"
    chart = at.get("plotly_chart")
    assert len(chart) == 1
    assert "loss by step" in chart[0].proto.spec


def test_models_page_shows_aliases_and_versions(seeded: Seeded) -> None:
    at = page("pages/models.py", cookie_for(seeded.settings, seeded.viewer))
    models = at.dataframe[0].value
    row = models.iloc[0]
    assert row["model"] == "iris-clf"
    assert row["aliases"] == "challenger→v2, champion→v1"
    versions = at.dataframe[1].value
    assert list(versions["version"]) == [2, 1]
    assert list(versions["aliases"]) == ["challenger", "champion"]
    assert list(versions["run_id"]) == list(reversed(seeded.run_ids))
    # The aliases were set in MLflow directly, never promoted: the API serves nothing, and
    # once the maintenance pass has noticed, the page says so.
    assert {m.label: m.value for m in at.metric}["Champion"] == "none"
    from mlwb.alias_drift import check_all

    check_all(seeded.svc)
    import streamlit as st

    st.cache_data.clear()  # pages cache reads for a few seconds
    at = page("pages/models.py", cookie_for(seeded.settings, seeded.viewer))
    assert at.warning and "moved in MLflow directly" in at.warning[0].value


def test_jobs_page_shows_live_jobs_queues_and_history(seeded: Seeded) -> None:
    at = page("pages/jobs.py", cookie_for(seeded.settings, seeded.viewer))
    assert "No worker is running" in text(at)
    queues, jobs, history = (d.value for d in at.dataframe)
    assert queues.set_index("queue").loc["wb-cpu", "waiting"] == 1
    live = jobs.iloc[0]
    assert (live["id"], live["experiment"], live["status"], live["submitted_by"]) == (
        seeded.job_id, "diabetes_ridge", "queued", "cli:test")
    by_job = history.set_index("job_id")
    assert by_job.loc["job-1", "status"] == "finished"
    assert by_job.loc["job-1", "run_id"] == "r-1" and by_job.loc["job-1", "events"] == 3
    assert by_job.loc[seeded.job_id, "status"] == "queued"
