"""`wb demo`: seed a realistic demo from real actions (never fake rows).

Each step uses the product's own service functions, so every row in the demo is one the
product really produced: accounts, tokens, audit entries, training runs and registered
versions, promotions, and live traffic with feedback, as those parts exist.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import click

from mlwb.db import get_fact, set_fact
from mlwb.roles import Role
from mlwb.services import Services
from wb.context import me, services

DEMO_FACT = "demo_seeded"
PEOPLE = [("admin", Role.admin), ("ada", Role.scientist), ("grace", Role.approver),
          ("viewer", Role.viewer)]


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = path.open("w")
    path.chmod(0o600)
    fd.write(text)
    fd.close()


def seed_people(svc: Services) -> dict[str, str]:
    """Demo accounts with random passwords, written to data/ (0600)."""
    creds: dict[str, str] = {}
    for name, role in PEOPLE:
        if svc.users.by_name(name) is None:
            password = secrets.token_urlsafe(12)
            svc.users.add(name, password, role, me())
            creds[name] = password
    data = svc.settings.data_dir
    if "admin" in creds:
        _write_secret(data / "admin-password.txt", creds["admin"] + "\n")
    if creds:
        lines = [f"{n} ({r.value}): {creds[n]}" for n, r in PEOPLE if n in creds]
        _write_secret(data / "demo-credentials.txt", "\n".join(lines) + "\n")
    return creds


def steps() -> list[tuple[str, Callable[[Services], object]]]:
    """The seeding steps that exist in this version of the product, in order."""
    from wb import demo_steps

    return [
        ("training runs of built-in experiments (registered, hash-recorded)",
         demo_steps.seed_runs),
        ("champion v1 and challenger v2, proposed by ada and approved by grace; shadow traffic",
         demo_steps.seed_promotions),
        (f"{demo_steps.TRAFFIC} predictions through the API (the second half drifts) and "
         "feedback for most", demo_steps.seed_traffic),
    ]


@click.command("demo")
@click.option("--if-new", is_flag=True, help="Do nothing if the demo was seeded before.")
@click.option("--accounts-only", is_flag=True, help="Only create the demo accounts.")
def demo_cmd(if_new: bool, accounts_only: bool) -> None:
    """Seed the demo: accounts, runs, registered models, traffic (whatever exists)."""
    svc = services()
    if if_new and get_fact(svc.engine, DEMO_FACT):
        click.echo("demo: already seeded")
        return
    creds = seed_people(svc)
    click.echo(f"demo: accounts ready ({', '.join(n for n, _ in PEOPLE)}); passwords of new "
               f"ones in {svc.settings.data_dir / 'demo-credentials.txt'}" if creds else
               "demo: accounts already exist")
    if accounts_only:
        return
    # Each step is remembered when it completes, so an interrupted demo resumes where it
    # stopped instead of training or promoting twice.
    for index, (title, step) in enumerate(steps()):
        key = f"{DEMO_FACT}:step{index}"
        if get_fact(svc.engine, key):
            continue
        click.echo(f"demo: {title}...")
        step(svc)
        set_fact(svc.engine, key, "1")
    set_fact(svc.engine, DEMO_FACT, "1")
    click.echo("demo: done")


def register(cli: click.Group) -> None:
    """Add ``wb demo``."""
    cli.add_command(demo_cmd)
