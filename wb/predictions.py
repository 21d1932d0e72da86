"""``wb predictions``: quality per model version, and the audited purge of raw inputs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from mlwb.errors import StoreError
from mlwb.ingest import Ingest, IngestLocked
from mlwb.predictions import WINDOWS, feedback_frame, parse_day, quality
from mlwb.retention import purge, request_purge
from wb.context import emit, json_option, me, services


@click.group("predictions")
def predictions_group() -> None:
    """The prediction log: quality per version, retention."""


@predictions_group.command("quality")
@click.argument("model")
@click.option("--window", type=click.Choice(list(WINDOWS)), default="day", show_default=True)
@click.option("--since", default=None, help="Only predictions from this date (YYYY-MM-DD).")
@json_option
def quality_cmd(model: str, window: str, since: str | None, as_json: bool) -> None:
    """Predictions, labelled ones, accuracy and MAE per version per time window."""
    rows = quality(services().lake, model, window, parse_day(since) if since else None)
    emit(rows, ["window_start", "version", "shadow", "predictions", "labelled", "accuracy",
                "mae"], as_json)


@predictions_group.command("purge")
@click.option("--before", "before", required=True,
              help="Blank the raw inputs of predictions made before this date (YYYY-MM-DD).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_cmd(before: str, yes: bool) -> None:
    """Blank raw inputs older than a date (outputs, versions and feedback are kept); audited.

    The running ingest (the lake's only writer) carries it out; with no ingest running, this
    command takes the lake's lock and does it itself.
    """
    cutoff = parse_day(before)
    if not yes:
        click.confirm(f"Blank the inputs of every prediction before {cutoff.isoformat()}?",
                      abort=True)
    svc = services()
    try:
        ingest = Ingest(svc.redis, svc.settings.lake_dir).open()
    except IngestLocked:
        blanked = request_purge(svc.redis, cutoff, me().actor)
        if blanked is None:
            raise StoreError("the ingest holds the lake but did not answer within 2 minutes; "
                             "check `data/logs/ingest.log`, then retry") from None
    else:
        try:
            blanked = purge(ingest, svc.sink, cutoff, me().actor)
        finally:
            ingest.close()
    click.echo(f"blanked the inputs of {blanked} prediction(s) made before "
               f"{cutoff.isoformat()}")


@click.command("from-feedback")
@click.argument("model")
@click.option("--since", default=None, help="Only predictions from this date (YYYY-MM-DD).")
@click.option("--name", default=None, help="Data set name (default: MODEL-feedback).")
@click.option("--target", default="label", show_default=True, help="Name of the label column.")
def from_feedback_cmd(model: str, since: str | None, name: str | None, target: str) -> None:
    """Build a data set version from MODEL's labelled predictions, ready for `wb run`."""
    from mlwb.datasets import DatasetStore

    svc = services()
    frame = feedback_frame(svc.lake, model, parse_day(since) if since else None, target)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{model}-feedback.parquet"
        frame.to_parquet(path, index=False)
        dv = DatasetStore(svc.settings, svc.engine, svc.sink).add(
            path, name or f"{model}-feedback", target, me())
    click.echo(f"{dv.ref}: {dv.rows} labelled predictions, {dv.n_columns} columns, target "
               f"{dv.target} -> use --param dataset={dv.ref}")


def register(cli: click.Group) -> None:
    """Add ``wb predictions``, and ``wb data from-feedback`` to the data group."""
    cli.add_command(predictions_group)
    predictions_group.add_command(from_feedback_cmd)
    data = cli.commands.get("data")  # wb.data registers before this module
    if isinstance(data, click.Group):
        data.add_command(from_feedback_cmd)
