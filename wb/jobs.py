"""`wb worker`, `wb run`, `wb sweep` and `wb jobs ...`: training jobs from the shell."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from mlwb.errors import InputError
from wb.context import emit, json_option, me, services, settings

JOB_COLUMNS = ["id", "experiment", "status", "queue", "attempts", "progress", "run_id",
               "created_at", "error"]


def parse_value(text: str) -> Any:
    """A CLI value: null/none become None; everything else stays text for pydantic to coerce."""
    return None if text.strip().lower() in ("null", "none") else text.strip()


def parse_params(pairs: tuple[str, ...], option: str = "--param") -> dict[str, Any]:
    """NAME=VALUE pairs as a dict; a malformed pair is a clear error."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"{option} expects NAME=VALUE, got {pair!r}")
        out[name.strip()] = parse_value(value)
    return out


def _progress(p: dict[str, Any]) -> str:
    if not p:
        return ""
    text = str(p.get("stage", ""))
    if p.get("epochs"):
        text += f" {p.get('epoch', 0)}/{p['epochs']}"
    metrics = p.get("metrics") or {}
    if "val_loss" in metrics:
        text += f" val_loss={metrics['val_loss']:.4f}"
    return text


def _row(info: Any) -> dict[str, Any]:
    d = info.to_dict()
    d["progress"] = _progress(d["progress"])
    return d


def _follow(job_id: str, as_json: bool) -> None:
    """Print progress until the job ends; exit 1 if it failed or was cancelled."""
    from jobs.service import get_job

    svc, last = services(), ""
    while True:
        info = get_job(svc, me(), job_id)
        line = f"{info.status} {_progress(info.progress)}".strip()
        if line != last and not as_json:
            click.echo(f"[{job_id[:8]}] {line}", err=True)
            last = line
        if info.done:
            break
        time.sleep(0.5)
    emit([_row(info)], JOB_COLUMNS, as_json) if as_json else _show(info)
    if info.status != "finished":
        sys.exit(1)


def _show(info: Any) -> None:
    for k, v in info.to_dict().items():
        if v not in (None, [], {}):
            click.echo(f"{k:>13}: {v}")


def register(cli: click.Group) -> None:
    """Add ``worker``, ``run``, ``sweep`` and the ``jobs`` group."""

    @cli.command("worker")
    @click.option("--gpu", type=int, default=None, help="Bind to GPU N (CUDA_VISIBLE_DEVICES); "
                  "listens on the GPU queue, then the CPU queue.")
    @click.option("--queues", default=None, help="Comma-separated queue names to listen on.")
    @click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
    @click.option("--name", default=None, help="Worker name (default: random).")
    def worker(gpu: int | None, queues: str | None, burst: bool, name: str | None) -> None:
        """Start an RQ worker that runs training jobs."""
        from jobs.worker import bind_gpu

        bind_gpu(gpu)  # before anything touches torch.cuda
        from jobs.worker import run_worker

        services()  # says how to start Redis if it is down
        run_worker(settings(), gpu=gpu, queues=queues.split(",") if queues else None,
                   burst=burst, name=name)

    @cli.command("run")
    @click.argument("experiment")
    @click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
                  help="An experiment parameter (repeatable); see `wb experiments show`.")
    @click.option("--wait", is_flag=True, help="Follow progress until the job ends.")
    @click.option("--queue", "queue_name", type=click.Choice(["auto", "cpu", "gpu"]),
                  default="auto", show_default=True)
    @click.option("--timeout", type=int, default=None, help="Seconds before the job is failed.")
    @click.option("--retries", type=int, default=None, help="Retries after a crash.")
    @json_option
    def run(experiment: str, params: tuple[str, ...], wait: bool, queue_name: str,
            timeout: int | None, retries: int | None, as_json: bool) -> None:
        """Submit a training job for EXPERIMENT."""
        from jobs.service import submit

        info = submit(services(), me(), experiment, parse_params(params), queue_name=queue_name,
                      timeout=timeout, retries=retries)
        if not as_json:
            click.echo(f"submitted job {info.id} ({experiment}) to {info.queue}")
        if wait:
            _follow(info.id, as_json)
        elif as_json:
            emit([_row(info)], JOB_COLUMNS, True)

    @cli.command("sweep")
    @click.argument("experiment")
    @click.option("--grid", "grid", multiple=True, metavar="NAME=V1,V2,...",
                  help="Values to try for a parameter (repeatable; the product is the grid).")
    @click.option("--random", "n_random", type=int, default=0,
                  help="N random trials: grid values drawn at random, log-scale parameters "
                  "(or --range ones) sampled in their declared range.")
    @click.option("--range", "ranges", multiple=True, metavar="NAME=LO:HI",
                  help="Sample NAME in [LO, HI] in random trials.")
    @click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
                  help="A parameter fixed for every trial.")
    @click.option("--metric", default=None, help="Metric that picks the best trial.")
    @click.option("--seed", type=int, default=0, help="Seed of the random draws.")
    @click.option("--wait", is_flag=True, help="Wait until every trial ended.")
    @json_option
    def sweep(experiment: str, grid: tuple[str, ...], n_random: int, ranges: tuple[str, ...],
              params: tuple[str, ...], metric: str | None, seed: int, wait: bool,
              as_json: bool) -> None:
        """Grid / random search: one job per trial under a parent MLflow run."""
        from jobs.sweeps import get_sweep, plan, start_sweep

        grid_values = {k: [parse_value(v) for v in str(vs).split(",")] for k, vs in
                       parse_params(grid, "--grid").items()}
        span: dict[str, tuple[float, float]] = {}
        for k, v in parse_params(ranges, "--range").items():
            lo, _sep, hi = str(v).partition(":")
            try:
                span[k] = (float(lo), float(hi))
            except ValueError:
                raise InputError(f"--range expects NAME=LO:HI with numbers, got {k}={v}") \
                    from None
        if n_random < 0:
            raise InputError("--random must be 0 or more")
        trials = plan(experiment, grid_values, n_random, parse_params(params), span or None,
                      seed)
        sw = start_sweep(services(), me(), experiment, trials, metric=metric)
        if not as_json:
            click.echo(f"sweep {sw.id}: {len(sw.job_ids)} trials, parent run "
                       f"{sw.parent_run_id}")
        if wait:
            from jobs.sweeps import maybe_finish

            while get_sweep(services(), sw.id).status == "running":
                maybe_finish(services(), sw.id)
                time.sleep(1)
        emit([get_sweep(services(), sw.id).to_dict()],
             ["id", "status", "parent_run_id", "metric", "best_run_id", "best_value"], as_json)

    @cli.group("jobs")
    def jobs() -> None:
        """Training jobs: list, show, cancel, logs, maintenance."""

    @jobs.command("list")
    @click.option("--status", default=None,
                  help="queued, running, finished, failed or cancelled.")
    @click.option("--limit", type=int, default=30, show_default=True)
    @json_option
    def list_(status: str | None, limit: int, as_json: bool) -> None:
        """The newest jobs first."""
        from jobs.service import list_jobs

        emit([_row(j) for j in list_jobs(services(), me(), status, limit)],
             ["id", "experiment", "status", "progress", "attempts", "run_id", "created_at"],
             as_json)

    @jobs.command("show")
    @click.argument("job_id")
    @json_option
    def show(job_id: str, as_json: bool) -> None:
        """One job: status, progress, run, result or error."""
        from jobs.service import get_job

        info = get_job(services(), me(), job_id)
        emit([info.to_dict()], list(info.to_dict()), True) if as_json else _show(info)

    @jobs.command("cancel")
    @click.argument("job_id")
    def cancel(job_id: str) -> None:
        """Cancel a queued job or stop a running one (its run ends KILLED)."""
        from jobs.service import cancel_job

        info = cancel_job(services(), me(), job_id)
        click.echo(f"job {job_id}: {info.status}")

    @jobs.command("logs")
    @click.argument("job_id")
    @click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
    def logs(job_id: str, follow: bool) -> None:
        """The job's log (live while it runs; from its run's artifacts afterwards)."""
        from jobs.service import get_job, job_log

        shown = 0
        while True:
            lines = job_log(services(), me(), job_id)
            for line in lines[shown:]:
                click.echo(line)
            shown = len(lines)
            if not follow or get_job(services(), me(), job_id).done:
                break
            time.sleep(1)

    @jobs.command("maintain")
    @click.option("--interval", type=float, default=None,
                  help="Seconds between passes (default: jobs.defaults.MAINTENANCE_INTERVAL).")
    @click.option("--once", is_flag=True, help="Run one pass and exit.")
    def maintain(interval: float | None, once: bool) -> None:
        """Find abandoned jobs and end runs left RUNNING; runs forever."""
        import logging

        from jobs import defaults
        from jobs.maintain import maintain_forever, maintain_once

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        if once:
            click.echo(str(maintain_once(services())))
            return
        maintain_forever(services(), interval or defaults.MAINTENANCE_INTERVAL)
