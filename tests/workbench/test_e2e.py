"""End to end in a real browser: the API (a real WSGI server), the ingest, and `streamlit run
workbench/app.py` on free ports; Debian's chromium signs in on the API's page and lands on the
signed-in workbench. Screenshots go to the test's tmp dir."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from api import create_app
from mlwb.ingest import Ingest
from mlwb.redis_server import free_port
from mlwb.roles import Role
from mlwb.services import Services
from mlwb.settings import Settings
from mlwb.users import operator
from tests.factories import wait_for
from tests.workbench.conftest import APP, settings_env

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is absent: apt-get install -y chromium"),
]


@pytest.fixture
def e2e_settings(settings: Settings) -> Settings:
    """Settings with the API and workbench on free ports of localhost, cookies over HTTP."""
    api_port, wb_port = free_port(), free_port()
    return settings.model_copy(update={
        "api_port": api_port, "workbench_port": wb_port,
        "api_url": f"http://localhost:{api_port}",
        "workbench_url": f"http://localhost:{wb_port}",
        "cookie_secure": False,
    })


@pytest.fixture
def stack(e2e_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """API + ingest threads and a streamlit subprocess, all on the test's Redis and data."""
    s = e2e_settings
    svc = Services.from_settings(s)
    svc.users.add("ada", PASSWORD, Role.admin, operator("test"))
    server = make_server("127.0.0.1", s.api_port, create_app(s, svc), threaded=True)
    api = threading.Thread(target=server.serve_forever, daemon=True)
    api.start()
    stop = threading.Event()
    ingest = Ingest(svc.redis, s.lake_dir, flush_seconds=0.2).open()
    landing = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    landing.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WB_", "STREAMLIT_"))}
    env.update(settings_env(s))
    log = (tmp_path / "streamlit.log").open("wb")
    workbench = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP),
         "--server.port", str(s.workbench_port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{s.api_port}/healthz", 30)
        wait_for(f"http://127.0.0.1:{s.workbench_port}/_stcore/health", 60, workbench)
        yield s
    finally:
        workbench.terminate()
        try:
            workbench.wait(timeout=10)
        except subprocess.TimeoutExpired:
            workbench.kill()
        log.close()
        server.shutdown()
        stop.set()
        landing.join(timeout=10)
        ingest.close()
        svc.redis.close()


def test_sign_in_on_the_api_lands_on_the_signed_in_workbench(
    stack: Settings, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(30_000)
            page.goto(stack.public_workbench_url)
            link = page.get_by_role("link", name="Sign in to ml-workbench")
            link.wait_for()
            page.screenshot(path=shots / "1-signed-out.png")
            href = link.get_attribute("href")
            assert href is not None and href.startswith(f"{stack.public_api_url}/login?next=")

            page.goto(href)
            page.fill("#username", "ada")
            page.fill("#password", PASSWORD)
            page.screenshot(path=shots / "2-api-sign-in.png")
            page.click("button[type=submit]")
            page.wait_for_url(f"{stack.public_workbench_url}/**")
            page.get_by_text("Signed in as").wait_for()
            page.get_by_text("Ingest backlog").wait_for()
            page.screenshot(path=shots / "3-overview.png", full_page=True)
            assert "ada" in page.inner_text("[data-testid=stSidebar]")

            # The sign-in was audited, landed by the ingest, and the chain verifies.
            page.get_by_role("link", name="Audit log").click()
            page.get_by_text("Hash chain intact").wait_for()
            page.locator("[data-testid=stDataFrame]").wait_for()
            page.screenshot(path=shots / "4-audit.png", full_page=True)
        finally:
            browser.close()
    sizes = {f.name: f.stat().st_size for f in shots.iterdir()}
    assert sorted(sizes) == ["1-signed-out.png", "2-api-sign-in.png", "3-overview.png",
                             "4-audit.png"]
    assert all(size > 1000 for size in sizes.values()), sizes
