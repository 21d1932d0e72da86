"""Settings: typed, from the environment, refusing placeholder secrets outside development."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlwb.errors import ConfigError
from mlwb.settings import Environment, Settings


def test_production_refuses_missing_or_placeholder_secret(tmp_path: Path) -> None:
    for secret in ("", "changeme", "short"):
        s = Settings(_env_file=None, env=Environment.production, data_dir=tmp_path,
                     secret_key=secret, redis_url="redis://x:6379/0")
        with pytest.raises(ConfigError, match="WB_SECRET_KEY"):
            s.check()


def test_production_needs_redis_url(tmp_path: Path) -> None:
    s = Settings(_env_file=None, env=Environment.production, data_dir=tmp_path,
                 secret_key="k" * 40)
    with pytest.raises(ConfigError, match="REDIS_URL"):
        s.check()


def test_development_generates_one_secret_shared_by_processes(tmp_path: Path) -> None:
    a = Settings(_env_file=None, data_dir=tmp_path).resolved_secret_key()
    b = Settings(_env_file=None, data_dir=tmp_path).resolved_secret_key()
    assert a == b and len(a) >= 32
    assert (tmp_path / ".secret_key").stat().st_mode & 0o077 == 0


def test_environment_and_aliases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:1/2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("WB_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("WB_API_WORKERS", "4")
    s = Settings(_env_file=None)
    assert s.redis_url == "redis://example:1/2"
    assert s.tracking_uri == "http://mlflow:5000"
    assert s.registry_uri == "http://mlflow:5000"
    assert s.data_dir == (tmp_path / "d").resolve()
    assert s.api_workers == 4
    assert s.state_url.startswith("sqlite:///")


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("WB_API_PORT=9123\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().api_port == 9123


def test_cookies_secure_outside_development(tmp_path: Path) -> None:
    assert not Settings(_env_file=None, data_dir=tmp_path).secure_cookies
    assert Settings(_env_file=None, data_dir=tmp_path,
                    env=Environment.production).secure_cookies
