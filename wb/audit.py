"""``wb audit``: read and verify the append-only audit log."""

from __future__ import annotations

import sys

import click

from mlwb.audit import read_audit, verify
from wb.context import emit, json_option, services


@click.group("audit", invoke_without_command=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--action", default=None, help="Only actions starting with this, e.g. 'auth.'.")
@click.option("--actor", default=None, help="Only entries whose actor contains this.")
@json_option
@click.pass_context
def audit_group(ctx: click.Context, limit: int, action: str | None, actor: str | None,
                as_json: bool) -> None:
    """Show the newest audit entries (who, what, when, before/after)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = read_audit(services().lake, limit=limit, action=action, actor=actor)
    emit(rows, ["seq", "ts", "actor", "action", "target", "before", "after"], as_json)


@audit_group.command("verify")
def verify_cmd() -> None:
    """Recompute the hash chain; exit 1 if an entry was edited, deleted or reordered."""
    svc = services()
    report = verify(svc.lake, svc.redis)
    if report.ok:
        click.echo(f"audit log intact: {report.entries} entries, chain and heads match")
        return
    click.secho(f"audit log TAMPERED ({len(report.problems)} problem(s)):", fg="red", err=True)
    for problem in report.problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(1)


def register(cli: click.Group) -> None:
    """Add ``wb audit``."""
    cli.add_command(audit_group)
