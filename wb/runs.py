"""`wb runs reproduce RUN_ID`: re-run a recorded run and compare its metrics."""

from __future__ import annotations

import sys

import click

from wb.context import emit, json_option, me, services


def register(cli: click.Group) -> None:
    """Add the ``runs`` group."""

    @cli.group("runs")
    def runs() -> None:
        """MLflow runs made by ml-workbench."""

    @runs.command("reproduce")
    @click.argument("run_id")
    @click.option("--here", is_flag=True, help="Train in this process instead of on a worker.")
    @json_option
    def reproduce(run_id: str, here: bool, as_json: bool) -> None:
        """Re-run RUN_ID with the same config, data version, split and seed; compare metrics."""
        from jobs.runs import compare, run_recipe

        svc = services()
        experiment, params = run_recipe(svc, run_id)
        if here:
            from experiments.runner import RunOptions, run_experiment

            new_run = run_experiment(svc, experiment, params, RunOptions(
                tags={"wb.reproduces": run_id})).run_id
        else:
            from jobs.service import submit, wait_for

            job = submit(svc, me(), experiment, params, extra={
                "tags": {"wb.reproduces": run_id}})
            click.echo(f"job {job.id} reproduces {run_id}", err=True)
            done = wait_for(svc, job.id)
            if done.status != "finished" or not done.run_id:
                click.secho(f"Error: the reproduction job {done.status}: {done.error}",
                            fg="red", err=True)
                sys.exit(2)
            new_run = done.run_id
        rows = compare(svc, run_id, new_run)
        if not as_json:
            click.echo(f"reproduced {run_id} as {new_run}")
        emit(rows, ["metric", "original", "reproduced", "same"], as_json)
        if not all(r["same"] for r in rows):
            sys.exit(1)
