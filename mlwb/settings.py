"""One typed settings object, read from the environment and an optional ``.env``.

Variables are ``WB_*``; the few with a well-known name elsewhere (``REDIS_URL``,
``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``, the S3 credentials MLflow's artifact
store reads) are read under that name too. Entry points call :func:`get_settings`; tests
build their own :class:`Settings` and pass it in.
"""

from __future__ import annotations

import functools
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlwb import cpu_pin, defaults
from mlwb.errors import ConfigError

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "development", "placeholder"}


class Environment(StrEnum):
    """Where the product runs; only development tolerates generated secrets."""

    development = "development"
    production = "production"
    test = "test"


class Settings(BaseSettings):
    """Every knob of the product, typed. See ``docs/configuration.md``."""

    model_config = SettingsConfigDict(
        env_prefix="WB_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.development
    data_dir: Path = Path(defaults.DATA_DIR)
    secret_key: str = ""

    redis_url: str = Field(
        default="", validation_alias=AliasChoices("WB_REDIS_URL", "REDIS_URL")
    )
    # Port of the private redis-server `wb up` starts when REDIS_URL is unset or silent.
    private_redis_port: int = defaults.PRIVATE_REDIS_PORT
    # Users, tokens, promotions: a small transactional DB. SQLite under data_dir by default;
    # a postgresql:// URL on a team server.
    state_db_url: str = ""
    mlflow_tracking_uri: str = Field(
        default="", validation_alias=AliasChoices("WB_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")
    )
    mlflow_registry_uri: str = Field(
        default="", validation_alias=AliasChoices("WB_MLFLOW_REGISTRY_URI", "MLFLOW_REGISTRY_URI")
    )
    # S3-compatible object store for artifacts and data sets (MinIO in docker-compose).
    mlflow_s3_endpoint_url: str = Field(
        default="",
        validation_alias=AliasChoices("WB_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"),
    )
    aws_access_key_id: str = Field(default="", validation_alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: str = Field(default="", validation_alias="AWS_SECRET_ACCESS_KEY")
    artifact_root: str = ""

    api_host: str = "127.0.0.1"
    api_port: int = defaults.API_PORT
    api_workers: int = defaults.API_WORKERS
    api_threads: int = defaults.API_THREADS
    # Each API worker on a core of its own (mlwb.cpu_pin): auto, on or off.
    api_pin_cpus: Literal["auto", "on", "off"] = defaults.API_PIN_CPUS
    workbench_port: int = defaults.WORKBENCH_PORT
    # Public base URLs, used for redirects between the API's sign-in page and the workbench.
    api_url: str = ""
    workbench_url: str = ""

    # Reverse proxies in front of the API whose X-Forwarded-For/-Proto are trusted (0: none).
    trusted_proxies: int = 0
    session_minutes: int = defaults.SESSION_MINUTES
    cookie_name: str = "wb_session"
    cookie_secure: bool | None = None  # None: Secure everywhere but development

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "ml-workbench@localhost"

    ingest_flush_seconds: float = defaults.INGEST_FLUSH_SECONDS
    # How far the ingest lowers its CPU priority (nice, 0..19): serving goes first, the log
    # lands in the gaps (see wb.stack.background).
    ingest_nice: int = Field(default=defaults.INGEST_NICE, ge=0, le=19)
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    # Prediction requests one token (or person) may make per minute, across all workers.
    predict_rate_limit: int = 100_000
    # Days raw prediction inputs are kept; the ingest blanks older ones hourly (0: forever).
    prediction_inputs_days: int = 0

    @field_validator("api_pin_cpus", mode="before")
    @classmethod
    def _pin_mode(cls, value: object) -> object:
        """Read as the worker reads it (mlwb.cpu_pin): any case, empty for auto."""
        return cpu_pin.parse(value) if isinstance(value, str) else value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # Derived values: computed, never stored, so a test that changes data_dir changes them all.
    @property
    def lake_dir(self) -> Path:
        """Parquet segments and the manifest of the event store."""
        return self.data_dir / "lake"

    @property
    def spool_dir(self) -> Path:
        """Each API process's write-ahead file of predictions on their way to Redis (local
        disk: a file is shipped by a sibling process when its owner dies)."""
        return self.data_dir / "spool"

    @property
    def state_url(self) -> str:
        """SQLAlchemy URL of the state DB."""
        return self.state_db_url or f"sqlite:///{self.data_dir / 'state.db'}"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI (a local SQLite store by default)."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        """MLflow registry URI (defaults to the tracking URI)."""
        return self.mlflow_registry_uri or self.tracking_uri

    @property
    def artifact_location(self) -> str:
        """Where MLflow puts artifacts for experiments this product creates."""
        return self.artifact_root or (self.data_dir / "mlartifacts").as_uri()

    @property
    def effective_redis_url(self) -> str:
        """``REDIS_URL`` if given, else the private redis-server `wb up` starts."""
        return self.redis_url or f"redis://127.0.0.1:{self.private_redis_port}/0"

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies everywhere but development, unless set explicitly."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.env != Environment.development

    @property
    def public_api_url(self) -> str:
        """Base URL of the API as a browser reaches it."""
        return self.api_url or f"http://localhost:{self.api_port}"

    @property
    def public_workbench_url(self) -> str:
        """Base URL of the workbench as a browser reaches it."""
        return self.workbench_url or f"http://localhost:{self.workbench_port}"

    def resolved_secret_key(self) -> str:
        """The signing key; in development a random one is generated once under data_dir."""
        key = self.secret_key.strip()
        if key.lower() not in PLACEHOLDER_SECRETS and len(key) >= 16:
            return key
        if self.env != Environment.development:
            raise ConfigError(
                "WB_SECRET_KEY is missing or a placeholder. Set WB_SECRET_KEY to a random "
                "string of 32+ characters, e.g. `python -c \"import secrets; "
                "print(secrets.token_urlsafe(48))\"`.",
                variable="WB_SECRET_KEY",
            )
        path = self.data_dir / ".secret_key"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = secrets.token_urlsafe(48)
        # O_EXCL: two processes starting at once agree on one key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(fresh)
        return fresh

    def check(self) -> Settings:
        """Refuse unsafe settings outside development; return self for chaining."""
        self.resolved_secret_key()
        if self.env == Environment.production and not self.redis_url:
            raise ConfigError("REDIS_URL is not set. Set REDIS_URL=redis://:PASSWORD@HOST:6379/0.",
                              variable="REDIS_URL")
        return self


def load_settings() -> Settings:
    """Settings from the environment and ``.env``; a bad value is a ConfigError naming it."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            problems.append(f"WB_{field.upper()} ({field}) = {err.get('input')!r}: {err['msg']}")
        raise ConfigError(
            "invalid settings: " + "; ".join(problems) + ". Fix these environment variables "
            "(or .env) and restart; see docs/configuration.md."
        ) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment and checked."""
    return load_settings().check()
