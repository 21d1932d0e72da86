"""``wb tokens``: API tokens for tools (shown once, stored hashed)."""

from __future__ import annotations

import click

from mlwb.roles import Scope, parse_scopes
from wb.context import emit, json_option, me, services


@click.group("tokens")
def tokens() -> None:
    """Create, list and revoke API tokens."""


@tokens.command("create")
@click.option("--user", "username", required=True, help="The person the token acts for.")
@click.option("--name", required=True, help="What uses the token, e.g. 'billing-service'.")
@click.option("--scopes", default="predict", show_default=True,
              help=f"Comma-separated: {', '.join(s.value for s in Scope)}.")
def create(username: str, name: str, scopes: str) -> None:
    """Create a token; it is printed once and never stored in clear."""
    token_id, token = services().tokens.create(username, name, parse_scopes(scopes), me())
    click.echo(f"token id: {token_id}")
    click.echo(f"token:    {token}")
    click.echo("Store it now: it is shown only once. Send it as `Authorization: Bearer <token>`.")


@tokens.command("list")
@click.option("--user", "username", default=None, help="Only this person's tokens.")
@json_option
def list_(username: str | None, as_json: bool) -> None:
    """Tokens with owner, scopes, last use and state (never the secret)."""
    rows = [{"id": t.id, "name": t.name, "user": t.username, "scopes": ",".join(t.scopes),
             "created_at": t.created_at, "last_used_at": t.last_used_at,
             "state": "revoked" if t.revoked_at else "active"}
            for t in services().tokens.list(username)]
    emit(rows, ["id", "name", "user", "scopes", "state", "last_used_at", "created_at"], as_json)


@tokens.command("revoke")
@click.argument("token_id")
def revoke(token_id: str) -> None:
    """Revoke TOKEN_ID; every API worker refuses it within seconds."""
    services().tokens.revoke(token_id, me())
    click.echo(f"revoked {token_id}")


def register(cli: click.Group) -> None:
    """Add ``wb tokens``."""
    cli.add_command(tokens)
