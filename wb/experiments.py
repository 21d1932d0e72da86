"""`wb experiments list/show`: the registered experiments and their typed parameters."""

from __future__ import annotations

import click

from wb.context import emit, json_option


def register(cli: click.Group) -> None:
    """Add the ``experiments`` group."""

    @cli.group("experiments")
    def experiments() -> None:
        """Registered experiments and their parameters."""

    @experiments.command("list")
    @json_option
    def list_(as_json: bool) -> None:
        """Every experiment: name, framework, task, built-in data."""
        from experiments.registry import all_experiments

        rows = [{"name": e.name, "framework": e.framework, "task": e.task, "data": e.data,
                 "description": e.description} for e in all_experiments()]
        emit(rows, ["name", "framework", "task", "data", "description"], as_json)

    @experiments.command("show")
    @click.argument("name")
    @json_option
    def show(name: str, as_json: bool) -> None:
        """Parameters of NAME: type, default, range."""
        from experiments.registry import describe, get

        exp = get(name)
        if not as_json:
            click.echo(f"{exp.name}: {exp.description} ({exp.framework}, {exp.task}, "
                       f"data: {exp.data})")
        emit(describe(name), ["name", "type", "default", "min", "max", "log", "description"],
             as_json)
