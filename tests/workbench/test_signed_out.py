"""Workbench pages on a fresh stack: signed out they offer only the API's sign-in; signed in
with nothing recorded yet, each says what to do."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from mlwb.redis_server import free_port
from mlwb.roles import Role
from mlwb.services import Services
from mlwb.settings import Settings, get_settings
from mlwb.users import operator
from tests.workbench.conftest import cookie_for, page, text, use_settings


def test_signed_out_shows_only_the_api_sign_in_link(wb_settings: Settings) -> None:
    for path in (None, "pages/runs.py", "pages/audit.py"):
        at = page(path)
        expected = f"{wb_settings.public_api_url}/login?next=" + quote(
            wb_settings.public_workbench_url, safe="")
        assert expected in text(at)
        assert not at.dataframe and not at.metric


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
    assert "nothing landed yet (is `wb ingest` running?)" in text(page(None, cookie))


def test_an_invalid_setting_is_a_message_not_a_traceback(
    wb_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WB_API_PORT", "eighty")
    get_settings.cache_clear()
    at = page()
    assert at.error and "api_port" in at.error[0].value and "restart" in at.error[0].value


def test_redis_down_is_said_plainly(svc: Services, wb_settings: Settings,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    admin = svc.users.add("ada", "correct horse battery", Role.admin, operator("test"))
    cookie = cookie_for(wb_settings, admin)
    down = wb_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    use_settings(down, monkeypatch)
    overview = page(None, cookie)
    assert {m.label: m.value for m in overview.metric}["Ingest backlog"] == "Redis down"
    jobs = page("pages/jobs.py", cookie)
    assert jobs.error and "Redis does not answer" in jobs.error[0].value
