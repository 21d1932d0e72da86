"""What every ``wb`` command shares: settings, services, the operator principal, output."""

from __future__ import annotations

import functools
import getpass
import json
from typing import Any

import click

from mlwb.errors import StoreError
from mlwb.redis_server import answers
from mlwb.services import Services
from mlwb.settings import Settings, get_settings
from mlwb.users import Principal, operator


def settings() -> Settings:
    """The process settings."""
    return get_settings()


@functools.lru_cache(maxsize=1)
def services(need_redis: bool = True) -> Services:
    """Services for this command; says how to start Redis when it is needed and down."""
    s = settings()
    if need_redis and not answers(s.effective_redis_url):
        raise StoreError(
            f"Redis at {s.effective_redis_url} does not answer. Start the stack with `wb up` "
            "(it starts a private Redis), or set REDIS_URL to a running Redis."
        )
    return Services.from_settings(s)


def me() -> Principal:
    """The operator running this command at the server's shell (audited as ``cli:USER``)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry in some containers
        name = "operator"
    return operator(name)


def emit(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    """Print rows as JSON lines or as an aligned table."""
    if as_json:
        for r in rows:
            click.echo(json.dumps({c: r.get(c) for c in columns}, default=str))
        return
    if not rows:
        click.echo("(none)")
        return
    text = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for t in text:
        click.echo("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
