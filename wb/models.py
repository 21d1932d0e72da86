"""``wb models``: registered models, promotions under four eyes, rollback, traffic, drift.

The operator at the server's shell is one person (``cli:USER``): a proposal made here is
approved by someone else (API or workbench), and the other way round.
"""

from __future__ import annotations

import json
import time

import click

from mlwb import promotions as pr
from mlwb.alias_drift import check_alias_drift, check_all, resolve_drift
from mlwb.errors import InputError
from mlwb.explain import explain
from mlwb.traffic import set_traffic
from wb.context import emit, json_option, me, services


@click.group("models")
def models() -> None:
    """Registered models: promote, approve, roll back, set traffic, see history."""


@models.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Registered models with their aliases (the product's record and MLflow's)."""
    rows = []
    for m in pr.list_models(services()):
        rows.append({**m, "aliases": _fmt(m["aliases"]), "mlflow_aliases":
                     _fmt(m["mlflow_aliases"]), "blocked": ",".join(m["blocked"])})
    emit(rows, ["name", "aliases", "mlflow_aliases", "mode", "blocked"], as_json)


def _fmt(aliases: dict[str, str]) -> str:
    return " ".join(f"{a}=v{v}" for a, v in sorted(aliases.items()))


@models.command("promote")
@click.argument("model")
@click.argument("version")
@click.option("--alias", default="champion", show_default=True, help="Alias to move.")
@click.option("--note", default="", help="Why (shown to the approver).")
def promote(model: str, version: str, alias: str, note: str) -> None:
    """Propose VERSION of MODEL for an alias; another approver approves it."""
    p = pr.propose(services(), me(), model, version, alias=alias, note=note)
    click.echo(f"proposed #{p.id}: {model} v{p.version} as {alias}. Another approver runs "
               f"`wb models approve {p.id}` (or approves it in the workbench).")


@models.command("approve")
@click.argument("promotion_id", type=int)
def approve(promotion_id: int) -> None:
    """Approve proposal PROMOTION_ID made by someone else: the alias moves."""
    p = pr.approve(services(), me(), promotion_id)
    click.echo(f"approved #{p.id}: {p.model} {p.alias} -> v{p.version}")


@models.command("reject")
@click.argument("promotion_id", type=int)
@click.option("--note", default="", help="Why.")
def reject(promotion_id: int, note: str) -> None:
    """Reject proposal PROMOTION_ID."""
    p = pr.reject(services(), me(), promotion_id, note)
    click.echo(f"rejected #{p.id}")


@models.command("rollback")
@click.argument("model")
@click.option("--alias", default="champion", show_default=True)
@click.option("--reason", default="", help="Why (kept in the audit log).")
@click.option("--from-version", default=None,
              help="Only if the alias still holds this version (else nothing moves).")
def rollback(model: str, alias: str, reason: str, from_version: str | None) -> None:
    """Move MODEL's alias back to its previous holder."""
    move = pr.rollback(services(), me(), model, alias, reason=reason,
                       from_version=from_version)
    click.echo(f"{model} {alias}: v{move.previous_version} -> v{move.version}")


@models.command("traffic")
@click.argument("model")
@click.option("--mode", type=click.Choice(["single", "split", "shadow"]),
              help="Set the mode; without it, show the policy.")
@click.option("--champion", "w_champion", type=float, help="Split weight of the champion.")
@click.option("--challenger", "w_challenger", type=float, help="Split weight of the challenger.")
@click.option("--sticky/--no-sticky", default=False, show_default=True,
              help="Keep a caller's key on one arm.")
@json_option
def traffic(model: str, mode: str | None, w_champion: float | None,
            w_challenger: float | None, sticky: bool, as_json: bool) -> None:
    """Show or set MODEL's traffic policy (single, split by weight, shadow)."""
    svc = services()
    if mode is not None:
        weights = None
        if w_champion is not None or w_challenger is not None:
            weights = {"champion": w_champion or 0.0, "challenger": w_challenger or 0.0}
        set_traffic(svc, me(), model, mode, weights, sticky)
    elif w_champion is not None or w_challenger is not None:
        raise InputError("give --mode split with the weights")
    plan = pr.serving_plan(svc.engine, pr.check_model_name(model)).to_dict()
    if as_json:
        click.echo(json.dumps(plan))
        return
    click.echo(f"{model}: mode {plan['mode']}, weights {plan['weights']}, sticky "
               f"{plan['sticky']}; champion v{plan['champion']}, challenger "
               f"v{plan['challenger']}" + (f"; blocked {plan['blocked']}"
                                          if plan["blocked"] else ""))


@models.command("history")
@click.argument("model")
@json_option
def history(model: str, as_json: bool) -> None:
    """MODEL's alias moves (newest first) and proposals."""
    h = pr.history(services(), model)
    if as_json:
        click.echo(json.dumps(h.to_dict()))
        return
    emit([m.to_dict() for m in h.moves],
         ["moved_at", "alias", "previous_version", "version", "reason", "moved_by"], False)
    click.echo("")
    emit([p.to_dict() for p in h.promotions],
         ["id", "alias", "version", "status", "proposed_by", "approved_by", "note"], False)


@models.command("drift")
@click.argument("model")
@click.option("--confirm", "confirm_id", type=int, help="Serve the MLflow move with this id.")
@click.option("--revert", "revert_id", type=int, help="Put MLflow back for this id.")
@json_option
def drift(model: str, confirm_id: int | None, revert_id: int | None, as_json: bool) -> None:
    """Find aliases of MODEL moved in MLflow directly; confirm or revert one."""
    svc = services()
    if confirm_id is not None and revert_id is not None:
        raise InputError("give --confirm or --revert, not both")
    if confirm_id is not None or revert_id is not None:
        action = "confirm" if confirm_id is not None else "revert"
        d = resolve_drift(svc, me(), confirm_id or revert_id or 0, action, model=model)
        click.echo(f"drift #{d.id} {d.status}")
    found = check_alias_drift(svc, model)
    emit([d.to_dict() for d in found],
         ["id", "alias", "recorded_version", "mlflow_version", "detected_at"], as_json)


@models.command("watch-drift")
@click.option("--every", default=30.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds between checks.")
@click.option("--once", is_flag=True, help="Check once and exit.")
def watch_drift(every: float, once: bool) -> None:
    """Check every model's MLflow aliases against the record, forever (one MLflow call each
    time); new differences are recorded, audited, and not served until decided."""
    svc = services()
    seen: set[int] = set()
    while True:
        for d in check_all(svc):
            if d.id not in seen:
                seen.add(d.id)
                click.echo(f"drift #{d.id}: {d.model} {d.alias} is v{d.mlflow_version} in "
                           f"MLflow, v{d.recorded_version} in the record; decide with "
                           f"`wb models drift {d.model} --confirm {d.id}` or `--revert {d.id}`")
        if once:
            return
        time.sleep(every)


@models.command("explain")
@click.argument("model")
@click.option("--row", "rows", multiple=True, required=True,
              help='One row as JSON, e.g. \'{"age": 41, "bmi": 22.5}\' (repeatable).')
@click.option("--version", default=None, help="Explain this version (default: the champion).")
@click.option("--alias", default=None, help="Explain the version holding this alias.")
@click.option("--top", default=10, show_default=True, help="Features shown per row.")
@json_option
def explain_cmd(model: str, rows: tuple[str, ...], version: str | None, alias: str | None,
                top: int, as_json: bool) -> None:
    """Per-feature attributions for rows of MODEL (they sum to its output)."""
    instances = []
    for i, text in enumerate(rows):
        try:
            instances.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InputError(f"--row {i + 1} is not JSON: {exc.msg}") from None
    out = explain(services(), me(), model, instances, version=version, alias=alias)
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{model} v{out['version']}; background: {out['background_rows']} rows of "
               f"{out['background_source']}")
    for i, ex in enumerate(out["explanations"]):
        click.echo(f"row {i + 1}: {ex['output']} = {ex['output_value']:.4g} "
                   f"(base {ex['base_value']:.4g}, {ex['method']})")
        ranked = sorted(ex["attributions"].items(), key=lambda kv: -abs(kv[1]))[:top]
        emit([{"feature": f, "attribution": f"{v:+.4g}"} for f, v in ranked],
             ["feature", "attribution"], False)


def register(cli: click.Group) -> None:
    """Add ``wb models``."""
    cli.add_command(models)
