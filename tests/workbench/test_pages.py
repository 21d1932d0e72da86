"""The workbench pages under streamlit's AppTest, against a real Redis, lake, state DB and
MLflow store: signed out they only offer the API's sign-in; signed in they show true data."""

from __future__ import annotations

from urllib.parse import quote

from streamlit.testing.v1 import AppTest

from mlwb.roles import Role
from mlwb.services import Services
from mlwb.settings import Settings
from mlwb.users import operator
from tests.workbench.conftest import APP, Seeded, cookie_for
from workbench.auth import COOKIE_STATE_KEY

TIMEOUT = 60


def page(path: str | None = None, cookie: str | None = None) -> AppTest:
    """Run the app (optionally on one page) with an optional session cookie."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if cookie is not None:
        at.session_state[COOKIE_STATE_KEY] = cookie
    at.run()
    if path is not None:
        at.switch_page(path).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def text(at: AppTest) -> str:
    """Every markdown, info, error, success and caption text on the page."""
    parts = [e.value for e in (*at.markdown, *at.info, *at.error, *at.success, *at.warning,
                               *at.caption, *at.title, *at.subheader)]
    return "\n".join(str(p) for p in parts)


def test_signed_out_shows_only_the_api_sign_in_link(wb_settings: Settings) -> None:
    for path in (None, "pages/runs.py", "pages/audit.py"):
        at = page(path)
        expected = f"{wb_settings.public_api_url}/login?next=" + quote(
            wb_settings.public_workbench_url, safe="")
        assert expected in text(at)
        assert not at.dataframe and not at.metric


def test_a_forged_or_foreign_cookie_is_not_a_sign_in(seeded: Seeded,
                                                      wb_settings: Settings) -> None:
    other = wb_settings.model_copy(update={"secret_key": "another-secret-key-0123456789"})
    for cookie in ("garbage", cookie_for(other, seeded.admin)):
        at = page(cookie=cookie)
        assert "/login?next=" in text(at)
        assert not at.metric


def test_overview_counts_what_really_landed(seeded: Seeded, wb_settings: Settings) -> None:
    at = page(cookie=cookie_for(wb_settings, seeded.admin))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "2"
    assert metrics["Events"] == "7"
    # two user.added entries landed (the test's own sign-in is not an API login)
    assert metrics["Audit entries"] == "2"
    assert metrics["Job events"] == "3"
    assert metrics["Ingest backlog"] == "0"
    kinds = at.dataframe[0].value
    assert list(kinds["kind"]) == ["prediction"] and list(kinds["events"]) == [7]
    assert "Signed in as **ada** (admin)" in [c.value for c in at.sidebar.caption]


def test_audit_page_lists_entries_filters_and_verifies_the_chain(
    seeded: Seeded, wb_settings: Settings
) -> None:
    at = page("pages/audit.py", cookie_for(wb_settings, seeded.admin))
    assert "Hash chain intact: 2 entries" in text(at)
    entries = at.dataframe[0].value
    assert list(entries["action"]) == ["user.added", "user.added"]
    assert set(entries["target"]) == {f"user:{seeded.admin.id}:ada",
                                      f"user:{seeded.viewer.id}:vic"}
    at.text_input[0].input("auth.").run()
    assert not at.dataframe and "No audit entries match" in text(at)


def test_audit_page_needs_an_approver(seeded: Seeded, wb_settings: Settings) -> None:
    at = page("pages/audit.py", cookie_for(wb_settings, seeded.viewer))
    assert at.error and "approver" in at.error[0].value
    assert not at.dataframe


def test_disabling_a_user_ends_their_workbench_session(seeded: Seeded, svc: Services,
                                                        wb_settings: Settings) -> None:
    cookie = cookie_for(wb_settings, seeded.viewer)
    assert page(cookie=cookie).metric
    svc.users.set_active("vic", False, operator("test"))
    at = page(cookie=cookie)
    assert "/login?next=" in text(at) and not at.metric


def test_runs_page_compares_runs_and_charts_a_metric(seeded: Seeded,
                                                     wb_settings: Settings) -> None:
    at = page("pages/runs.py", cookie_for(wb_settings, seeded.viewer))
    runs = at.dataframe[0].value
    assert set(runs["run_id"]) == set(seeded.run_ids)
    assert set(runs["run_name"]) == {"lr-0.1", "lr-0.01"}
    assert "metrics.loss" in runs.columns and "params.lr" in runs.columns
    assert at.selectbox[0].value == "loss"
    chart = at.get("plotly_chart")
    assert len(chart) == 1
    assert "loss by step" in chart[0].proto.spec


def test_models_page_shows_aliases_and_versions(seeded: Seeded, wb_settings: Settings) -> None:
    at = page("pages/models.py", cookie_for(wb_settings, seeded.viewer))
    models = at.dataframe[0].value
    row = models.iloc[0]
    assert row["model"] == "iris-clf"
    assert row["aliases"] == "challenger→v2, champion→v1"
    versions = at.dataframe[1].value
    assert list(versions["version"]) == [2, 1]
    assert list(versions["run_id"]) == list(reversed(seeded.run_ids))


def test_jobs_page_shows_history_and_live_queues(seeded: Seeded, wb_settings: Settings) -> None:
    at = page("pages/jobs.py", cookie_for(wb_settings, seeded.viewer))
    assert "No worker is running" in text(at)
    queues, history = (d.value for d in at.dataframe)
    assert queues.set_index("queue").loc["train", "waiting"] == 1
    job = history.iloc[0]
    assert (job["job_id"], job["status"], job["run_id"], job["events"]) == (
        "job-1", "finished", "r-1", 3)


def test_empty_stack_pages_say_what_to_do(svc: Services, wb_settings: Settings) -> None:
    admin = svc.users.add("ada", "correct horse battery", Role.admin, operator("test"))
    cookie = cookie_for(wb_settings, admin)
    expectations = {
        None: "No events yet",
        "pages/runs.py": "No MLflow runs yet",
        "pages/models.py": "No registered models yet",
        "pages/jobs.py": "No job events landed yet",
        "pages/audit.py": "No audit entries match",
    }
    for path, message in expectations.items():
        assert message in text(page(path, cookie)), path
