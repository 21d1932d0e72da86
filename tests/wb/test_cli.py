"""The `wb` CLI: every command has --help; mistakes print `Error: ...`, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from mlwb.settings import Settings, get_settings
from tests.factories import cli_invoker, land
from wb import context
from wb.main import cli


@pytest.fixture
def run(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    yield from cli_invoker(settings, monkeypatch)


def walk(group: click.Group, prefix: list[str]) -> Iterator[list[str]]:
    for name, command in group.commands.items():
        yield [*prefix, name]
        if isinstance(command, click.Group):
            yield from walk(command, [*prefix, name])


def test_every_command_has_help() -> None:
    paths = list(walk(cli, []))
    assert len(paths) > 10
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_users_and_tokens_round_trip(run) -> None:  # type: ignore[no-untyped-def]
    assert run("users", "add", "carol", "--role", "approver",
               "--password", "a-long-password").exit_code == 0
    listed = run("users", "list", "--json").output
    assert '"username": "carol"' in listed and '"role": "approver"' in listed
    created = run("tokens", "create", "--user", "carol", "--name", "ci", "--scopes",
                  "predict,read")
    assert created.exit_code == 0
    token_id = created.output.split("token id:")[1].split()[0]
    token = created.output.split("token:    ")[1].split()[0]
    assert token.startswith("wbt_")
    assert token not in run("tokens", "list").output
    assert run("tokens", "revoke", token_id).exit_code == 0
    assert "revoked" in run("tokens", "list", "--user", "carol").output
    assert run("users", "set-role", "carol", "viewer").exit_code == 0
    assert run("users", "disable", "carol").exit_code == 0
    land(context.services())
    audit_out = run("audit", "--json").output
    for action in ("user.added", "token.created", "token.revoked", "user.role_changed",
                   "user.disabled"):
        assert action in audit_out
    assert token not in audit_out
    verified = run("audit", "verify")
    assert verified.exit_code == 0 and "intact" in verified.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "add", "x y", "--password", "a-long-password"], "username"),
        (["users", "add", "dave", "--role", "boss", "--password", "a-long-password"],
         "unknown role"),
        (["users", "add", "dave", "--password", "short"], "at least 10"),
        (["users", "set-role", "ghost", "admin"], "no user named"),
        (["users", "disable", "ghost"], "no user named"),
        (["tokens", "create", "--user", "ghost", "--name", "n"], "no user named"),
        (["tokens", "create", "--user", "erin", "--name", "n", "--scopes", "fly"],
         "unknown scope"),
        (["tokens", "revoke", "nope"], "no token"),
    ],
)
def test_mistakes_say_what_to_do(run, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    run("users", "add", "erin", "--password", "a-long-password")
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Error: " in result.output and message in result.output
    assert "Traceback" not in result.output


def test_redis_down_says_how_to_fix(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    context.services.cache_clear()
    result = CliRunner().invoke(cli, ["users", "list"])
    get_settings.cache_clear()
    context.services.cache_clear()
    assert result.exit_code == 2
    assert "does not answer" in result.output and "wb up" in result.output


def test_invalid_setting_is_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WB_API_PORT", "eighty")
    get_settings.cache_clear()
    context.services.cache_clear()
    result = CliRunner().invoke(cli, ["users", "list"])
    get_settings.cache_clear()
    assert result.exit_code == 2
    assert "WB_API_PORT" in result.output and "Traceback" not in result.output
