"""`drkit drill`: restore into a sandbox, check, measure RTO and RPO."""

from __future__ import annotations

import click

from drkit.actions.drill import DrillResult, drill
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.outcomes import exit_code
from drkit.cli.progress import phase_progress
from drkit.cli.resources import opened_resources, plan_lock, wait_for_lock_option
from drkit.errors import ExitCode
from drkit.outcome import Outcome
from drkit.plan.durations import humanize_seconds
from drkit.preflight import require_ready


def drill_exit_code(results: list[DrillResult]) -> int:
    """The worst outcome's code; no drill at all proved nothing, which is a failure."""
    if not results:
        return int(ExitCode.FAILED)
    return exit_code(result.outcome for result in results)


def drill_verdict(outcome: Outcome) -> str:
    """A drill's outcome for people: auditors read PASSED, not OK."""
    return "PASSED" if outcome is Outcome.OK else outcome.value.upper()


def render_drill(result: DrillResult) -> None:
    phases = ", ".join(
        f"{name} {humanize_seconds(result.phases[name])}"
        for name in ("provision", "locate", "fetch", "decrypt", "load", "replay", "checks")
        if name in result.phases
    )
    for check in result.checks:
        mark = {True: "ok  ", False: "FAIL", None: "note"}[check.passed]
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
        f"drill of {result.snapshot_id} from {result.store or '?'}: {drill_verdict(result.outcome)}; "
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
Exit: 0 passed, 1 a check failed, 4 an objective (RTO/RPO) was breached, 5 locked.""",
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
@wait_for_lock_option
@json_option
@click.pass_obj
def drill_command(
    context: Context,
    plan_file: str,
    store: str | None,
    all_stores: bool,
    snapshot_id: str | None,
    wait_for_lock: str | None,
    as_json: bool,
) -> int:
    """Restore PLAN's newest snapshot into throwaway sandboxes, run the plan's checks, and
    measure RTO (per phase) and RPO against the objectives. Sandboxes are always removed."""
    with (
        opened_resources(context, plan_file) as resources,
        phase_progress(enabled=not as_json and not context.quiet, what="drill") as progress,
    ):
        require_ready(resources.plan, "drill", plan_file)
        if store is not None:
            resources.repository.store(store)  # a mistyped name: a usage error, no lock taken
        with plan_lock(resources, wait_for_lock):
            results = drill(
                resources,
                store=store,
                all_stores=all_stores,
                snapshot_id=snapshot_id,
                progress=progress,
            )
    if as_json:
        echo_json([result.to_json() for result in results])
    else:
        for result in results:
            render_drill(result)
    return drill_exit_code(results)
