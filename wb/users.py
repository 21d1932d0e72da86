"""``wb users``: accounts and roles (admin work, done at the server's shell)."""

from __future__ import annotations

import click

from mlwb.roles import Role
from wb.context import emit, json_option, me, services


@click.group("users")
def users() -> None:
    """Add, list, disable and change the role of people."""


@users.command("add")
@click.argument("username")
@click.option("--role", default="viewer", show_default=True,
              help="viewer, scientist, approver or admin.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="At least 10 characters (prompted when omitted).")
def add(username: str, role: str, password: str) -> None:
    """Create USERNAME with a role and a password."""
    user = services().users.add(username, password, Role.parse(role), me())
    click.echo(f"added {user.username} ({user.role.value})")


@users.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Every account with its role and state."""
    rows = [{"id": u.id, "username": u.username, "role": u.role.value,
             "active": u.active, "created_at": u.created_at} for u in services().users.list()]
    emit(rows, ["id", "username", "role", "active", "created_at"], as_json)


@users.command("disable")
@click.argument("username")
def disable(username: str) -> None:
    """Disable USERNAME: ends their sessions and revokes their tokens at once."""
    services().users.set_active(username, False, me())
    click.echo(f"disabled {username}; their sessions and tokens no longer work")


@users.command("enable")
@click.argument("username")
def enable(username: str) -> None:
    """Re-enable USERNAME (their old tokens stay revoked)."""
    services().users.set_active(username, True, me())
    click.echo(f"enabled {username}")


@users.command("set-role")
@click.argument("username")
@click.argument("role")
def set_role(username: str, role: str) -> None:
    """Give USERNAME a ROLE (viewer, scientist, approver, admin)."""
    user = services().users.set_role(username, Role.parse(role), me())
    click.echo(f"{user.username} is now {user.role.value}")


@users.command("set-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="At least 10 characters (prompted when omitted).")
def set_password(username: str, password: str) -> None:
    """Set USERNAME's password (ends their sessions)."""
    services().users.set_password(username, password, me())
    click.echo(f"password of {username} changed; their sessions were ended")


def register(cli: click.Group) -> None:
    """Add ``wb users``."""
    cli.add_command(users)
