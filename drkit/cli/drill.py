"""`drkit drill`: restore into a sandbox, check, measure RTO and RPO."""

from __future__ import annotations

import click

from drkit.actions.drill import DrillResult, drill
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.resources import opened_resources
from drkit.errors import ExitCode
from drkit.plan.durations import humanize_seconds


def drill_exit_code(results: list[DrillResult]) -> ExitCode:
    outcomes = {result.outcome for result in results}
    if outcomes & {"failed", "error"}:
        return ExitCode.FAILED
    if "breached" in outcomes:
        return ExitCode.OBJECTIVE_BREACHED
    return ExitCode.OK


def render_drill(result: DrillResult) -> None:
    phases = ", ".join(
        f"{name} {humanize_seconds(result.phases[name])}"
        for name in ("provision", "fetch", "decrypt", "load", "checks")
        if name in result.phases
    )
    for check in result.checks:
        mark = "ok  " if check.passed else "FAIL"
        detail = f" ({check.detail})" if check.detail and not check.passed else ""
        measured = f" = {check.measured}" if check.measured is not None else ""
        click.echo(f"  {mark} {check.name}{measured}{detail}")
    rto = humanize_seconds(result.rto_seconds) if result.rto_seconds is not None else "–"
    rpo = humanize_seconds(result.rpo_seconds) if result.rpo_seconds is not None else "–"
    rto_objective = (
        f" (objective {humanize_seconds(result.rto_objective)})" if result.rto_objective else ""
    )
    rpo_objective = (
        f" (objective {humanize_seconds(result.rpo_objective)})" if result.rpo_objective else ""
    )
    click.echo(
        f"drill of {result.snapshot_id} from {result.store or '?'}: {result.outcome.upper()}; "
        f"RTO {rto}{rto_objective} [{phases}]; RPO {rpo}{rpo_objective}"
    )
    for breach in result.breaches:
        click.echo(f"  objective breached: {breach}", err=True)
    if result.error:
        click.echo(f"  error: {result.error}", err=True)


@click.command(
    "drill",
    epilog="""\b
Examples:
  drkit drill plans/payments.yaml
  drkit drill plans/payments.yaml --store s3-euw1     # prove the eu-west-1 copy
  drkit drill plans/payments.yaml --all-stores --json
Exit: 0 passed, 1 a check failed, 4 an objective (RTO/RPO) was breached.""",
)
@click.argument("plan_file", type=click.Path())
@click.option("--store", metavar="NAME", help="Drill this store's copy (no failover).")
@click.option("--all-stores", is_flag=True, help="Drill every store's copy in turn.")
@click.option(
    "--snapshot",
    "snapshot_id",
    metavar="ID",
    help="Drill this snapshot (default: newest complete).",
)
@json_option
@click.pass_obj
def drill_command(
    context: Context,
    plan_file: str,
    store: str | None,
    all_stores: bool,
    snapshot_id: str | None,
    as_json: bool,
) -> int:
    """Restore PLAN's newest snapshot into throwaway sandboxes, run the plan's checks, and
    measure RTO (per phase) and RPO against the objectives. Sandboxes are always removed."""
    with opened_resources(context, plan_file) as resources:
        results = drill(resources, store=store, all_stores=all_stores, snapshot_id=snapshot_id)
    if as_json:
        echo_json([result.to_json() for result in results])
    else:
        for result in results:
            render_drill(result)
    return int(drill_exit_code(results))
