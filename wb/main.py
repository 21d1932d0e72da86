"""The ``wb`` command: one click group; each area adds its commands from its own module.

Errors the product raises on purpose print as ``Error: <what to do>`` (exit 2), never as a
traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click
import redis

from mlwb.errors import WorkbenchError

# Modules with a ``register(cli)`` function, in help order.
COMMAND_MODULES = ["wb.stack", "wb.users", "wb.tokens", "wb.audit", "wb.demo", "wb.models",
                   "wb.experiments", "wb.jobs", "wb.data", "wb.runs", "wb.predictions"]


class WorkbenchGroup(click.Group):
    """A click group that turns product errors into one clear line."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; print WorkbenchError as a message, not a traceback."""
        try:
            return super().invoke(ctx)
        except WorkbenchError as exc:
            click.secho(f"Error: {exc.message}", fg="red", err=True)
            sys.exit(2)
        except redis.ConnectionError as exc:
            click.secho(f"Error: Redis does not answer ({exc}). Start the stack with `wb up`, "
                        "or set REDIS_URL to a running Redis.", fg="red", err=True)
            sys.exit(2)


@click.group(cls=WorkbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ml-workbench")
def cli() -> None:
    """ml-workbench: experiments, GPU jobs, embedded model serving and drift reports.

    Start everything locally with `wb up`; see `wb COMMAND --help` for each part.
    """


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)
