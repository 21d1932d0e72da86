"""docker-compose.yml: parsed by a real compose implementation when one is installed (Debian's
`docker-compose` parses without an engine), and always by PyYAML with the structural rules
of a team server: secrets required, only the API and workbench published, healthchecks
gating startup, Redis durable, a GPU worker, and every variable our services read a setting."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from mlwb.settings import Environment, Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {
    "WB_SECRET_KEY": "k" * 48,
    "REDIS_PASSWORD": "redis-pass-0123456789",
    "POSTGRES_PASSWORD": "pg-pass-0123456789",
    "MINIO_ROOT_USER": "minio-user",
    "MINIO_ROOT_PASSWORD": "minio-pass-0123456789",
}
PUBLISHED = {"api", "workbench"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|AUTH|TOKEN|ACCESS_KEY")
REF = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?P<op>:\?|:-|\?|-)?(?P<arg>[^}]*)\}")


def raw() -> dict[str, Any]:
    """The file as PyYAML reads it (anchors and merge keys resolved, variables not)."""
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution (``${X}``, ``${X:-d}``, ``${X:?msg}``, ``$$``)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return REF.sub(one, value).replace("$$", "$")


def services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services mapping."""
    return doc["services"]  # type: ignore[no-any-return]


def command(service: dict[str, Any]) -> list[str]:
    """A service's command as a list."""
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def ours(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run ml-workbench code (`wb ...` in our image)."""
    return {n: s for n, s in services(doc).items() if command(s)[:1] == ["wb"]}


def settings_env_names() -> set[str]:
    """Every environment name Settings reads: WB_<field> or the field's aliases."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(c) for c in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def test_every_variable_our_services_read_is_a_setting() -> None:
    doc = raw()
    known = settings_env_names()
    assert set(ours(doc)) >= {"api", "ingest", "worker-gpu0", "jobs-maintenance", "workbench"}
    for name, service in ours(doc).items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use the mapping form of environment"
        unknown = sorted(set(env) - known)
        assert not unknown, f"{name} sets {unknown}, which mlwb.settings.Settings does not read"


def test_our_services_environment_builds_production_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    doc = interpolate(raw(), SECRETS)
    for name, service in ours(doc).items():
        for key in settings_env_names():
            monkeypatch.delenv(key, raising=False)
        for key, value in service["environment"].items():
            monkeypatch.setenv(key, str(value))
        s = Settings().check()
        assert s.env == Environment.production, name
        assert s.resolved_secret_key() == SECRETS["WB_SECRET_KEY"]
        assert s.effective_redis_url == "redis://:redis-pass-0123456789@redis:6379/0"
        assert s.state_url.startswith("postgresql+psycopg2://") and "@postgres:" in s.state_url
        assert s.tracking_uri == s.registry_uri == "http://mlflow:5000"
        assert s.mlflow_s3_endpoint_url == "http://minio:9000"
        assert s.aws_secret_access_key == SECRETS["MINIO_ROOT_PASSWORD"]
        assert s.artifact_location == "s3://mlflow/artifacts"
        assert str(s.data_dir) == "/data"
    # Published services must listen beyond the container's loopback.
    assert ours(doc)["api"]["environment"]["WB_API_HOST"] == "0.0.0.0"
    assert command(ours(doc)["workbench"])[-2:] == ["--host", "0.0.0.0"]


def test_only_the_api_and_the_workbench_publish_ports() -> None:
    doc = raw()
    published = {n for n, s in services(doc).items() if s.get("ports")}
    assert published == PUBLISHED
    assert not [n for n, s in services(doc).items() if s.get("network_mode") == "host"]


def test_secrets_are_required_variables_never_literals() -> None:
    text = COMPOSE.read_text()
    for m in REF.finditer(text):
        if SECRET_NAME.search(m["name"]):
            assert m["op"] == ":?", f"${{{m['name']}}} must be written ${{{m['name']}:?...}}"
    for name, service in services(raw()).items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert REF.fullmatch(str(value)), f"{name}.{key} must come from ${{VAR:?...}}"
            if isinstance(value, str) and "://" in value and "@" in value:
                assert "${" in value.split("@", 1)[0], f"{name}.{key} embeds a credential"
    with pytest.raises(KeyError, match="WB_SECRET_KEY"):
        interpolate(raw(), {k: v for k, v in SECRETS.items() if k != "WB_SECRET_KEY"})


def test_startup_is_gated_by_healthchecks() -> None:
    svcs = services(raw())
    for name, service in svcs.items():
        deps = service.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        for dep, spec in deps.items():
            condition = spec.get("condition")
            if svcs[dep].get("restart") == "no":  # one-shot setup (buckets, databases)
                assert condition == "service_completed_successfully", (name, dep)
            else:
                assert condition == "service_healthy", (name, dep)
                assert "healthcheck" in svcs[dep], f"{name} waits on {dep}, which has none"
    for infra in ("redis", "postgres", "minio", "mlflow", "api", "ingest", "workbench"):
        assert svcs[infra]["healthcheck"]["test"], infra
    assert {"redis", "postgres", "mlflow", "ingest"} <= set(svcs["api"]["depends_on"])


def test_redis_is_durable_and_password_protected() -> None:
    redis = services(raw())["redis"]
    line = " ".join(command(redis))
    assert "--appendonly yes" in line
    assert "--maxmemory-policy noeviction" in line
    assert "--requirepass" in line
    assert "healthcheck" in redis


def test_the_team_services_are_all_there() -> None:
    svcs = services(raw())
    commands = {n: " ".join(command(s)) for n, s in svcs.items()}
    for wanted in ("wb api", "wb ingest", "wb worker --gpu 0", "wb jobs maintain",
                   "wb workbench"):
        assert any(c == wanted or c.startswith(wanted + " ") for c in commands.values()), wanted
    assert any("mailpit" in str(s.get("image")) or "mailhog" in str(s.get("image"))
               for s in svcs.values())
    assert "minio/minio" in svcs["minio"]["image"]
    assert "mc mb" in commands["minio-buckets"] or "mc mb" in " ".join(
        svcs["minio-buckets"].get("entrypoint", []))
    mlflow = commands["mlflow"]
    assert "--backend-store-uri" in mlflow and "postgresql" in mlflow
    assert "s3://" in mlflow
    assert "ports" not in svcs["mlflow"]


def test_gpu_worker_reserves_a_device_and_gets_time_to_stop() -> None:
    worker = services(raw())["worker-gpu0"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device["device_ids"] == ["0"]
    minutes = re.fullmatch(r"(\d+)m", worker["stop_grace_period"])
    assert minutes and int(minutes[1]) >= 5
    assert worker["build"]["args"]["TORCH_VARIANT"].startswith("${TORCH_CUDA")


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(n for n in settings_env_names() if f"`{n}`" not in doc)
    assert not missing, f"docs/configuration.md does not describe {missing}"


def test_our_services_share_one_image_built_here() -> None:
    images = {s["image"] for s in ours(raw()).values()}
    assert images <= {"ml-workbench:latest", "ml-workbench:cuda"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "ARG TORCH_VARIANT=cpu" in dockerfile
    # torch comes from the variant's index *before* the project, so pip never swaps it.
    assert dockerfile.index("whl/${TORCH_VARIANT}") < dockerfile.index('pip install ".[server]"')
    # Every package pyproject installs is copied into the image.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in dockerfile, package
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "data", ".env", ".git"} <= set(ignored)


def test_ingest_healthcheck_follows_the_real_ingest(settings: Settings, tmp_path: Path) -> None:
    """The healthcheck command, run against a real `wb ingest`: healthy, then not once killed."""
    test = services(raw())["ingest"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    check = test[3].replace("/data/", f"{settings.data_dir}/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WB_")}
    env.update({"WB_ENV": "test", "WB_DATA_DIR": str(settings.data_dir),
                "REDIS_URL": settings.redis_url, "WB_SECRET_KEY": settings.secret_key})
    ingest = subprocess.Popen([sys.executable, "-m", "wb", "ingest"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = settings.lake_dir / "ingest.lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip() == str(ingest.pid)):
            assert ingest.poll() is None and time.monotonic() < deadline, "wb ingest never started"
            time.sleep(0.1)
        healthy = subprocess.run([sys.executable, "-c", check], capture_output=True, check=False)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        ingest.kill()
        ingest.wait(timeout=30)
    dead = subprocess.run([sys.executable, "-c", check], capture_output=True, check=False)
    assert dead.returncode != 0


# -- a real compose implementation ------------------------------------------------------------
def compose_binary() -> list[str] | None:
    """`docker-compose` (Debian's parses without an engine), or the `docker compose` plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 check=False).returncode == 0:
        return [docker, "compose"]
    return None


needs_compose = pytest.mark.skipif(
    compose_binary() is None,
    reason="no compose implementation: apt-get install -y docker-compose (no engine needed)",
)


def run_compose(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run compose on our file with only ``env`` (and an empty --env-file: no stray .env)."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    base = compose_binary()
    assert base is not None
    return subprocess.run(
        [*base, "--env-file", str(empty), "-f", str(COMPOSE), *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )


@needs_compose
def test_a_real_compose_parser_accepts_the_file(tmp_path: Path) -> None:
    checked = run_compose(tmp_path, SECRETS, "config", "-q")
    assert checked.returncode == 0, checked.stderr
    rendered = run_compose(tmp_path, SECRETS, "config")
    assert rendered.returncode == 0, rendered.stderr
    doc = yaml.safe_load(rendered.stdout)
    assert {n for n, s in doc["services"].items() if s.get("ports")} == PUBLISHED
    assert doc["services"]["api"]["environment"]["REDIS_URL"] == (
        "redis://:redis-pass-0123456789@redis:6379/0")
    ours_rendered = ours(doc)
    mine = interpolate(raw(), SECRETS)
    for name, service in ours_rendered.items():
        assert {k: str(v) for k, v in service["environment"].items()} == {
            k: str(v) for k, v in services(mine)[name]["environment"].items()}, name


@needs_compose
def test_a_real_compose_parser_refuses_a_missing_secret(tmp_path: Path) -> None:
    for missing in SECRETS:
        env = {k: v for k, v in SECRETS.items() if k != missing}
        result = run_compose(tmp_path, env, "config", "-q")
        assert result.returncode != 0, missing
        assert f"set {missing}" in result.stderr, result.stderr


def test_the_ingest_yields_the_cpu_to_the_api() -> None:
    stack = services(raw())
    assert stack["ingest"]["cpu_shares"] < 1024  # docker's default weight, the API's
    assert "cpu_shares" not in stack["api"]
