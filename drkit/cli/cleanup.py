"""`drkit cleanup`: remove what killed drkit processes left behind, and close their runs.

Every command on a plan does the same quietly before it starts (``sweep_quietly``); this
command does it on demand, for some plans or all, and can say what it would do first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from drkit.cli.context import Context, echo_json, json_option
from drkit.errors import DrkitError, ExitCode
from drkit.leases.sweeper import Leftover, sweep
from drkit.plan.loader import find_plan_files, load_plan
from drkit.plan.schema import Plan

if TYPE_CHECKING:
    from drkit.catalog import Catalog, RunRecord

log = logging.getLogger(__name__)


@dataclass
class CleanupReport:
    """What a sweep found: leftovers of dead processes and the runs they left ``running``."""

    leftovers: list[Leftover] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def failed(self) -> list[Leftover]:
        return [item for item in self.leftovers if item.state == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "leftovers": [item.to_json() for item in self.leftovers],
            "interrupted_runs": [
                {
                    "id": run.id,
                    "plan": run.plan,
                    "kind": run.kind,
                    "pid": run.pid,
                    "started_at": run.started_at.isoformat(),
                }
                for run in self.runs
            ],
        }


def sweep_leftovers(
    plans: Mapping[str, Plan] | None, catalog: Catalog | None, *, dry_run: bool = False
) -> CleanupReport:
    """Clean up after dead drkit processes of this host: their leases (of ``plans``, or all)
    and their runs, closed as ``interrupted``."""
    report = CleanupReport(sweep(plans, dry_run=dry_run))
    if catalog is not None:
        names = list(plans) if plans is not None else None
        report.runs = catalog.interrupt_orphaned_runs(names, dry_run=dry_run)
    for run in report.runs if not dry_run else []:
        log.warning(
            "run %s (%s of %s, pid %s) was left running by a process that died; "
            "recorded as interrupted",
            run.id,
            run.kind,
            run.plan,
            run.pid,
        )
    return report


def sweep_quietly(plans: Mapping[str, Plan], catalog: Catalog | None) -> None:
    """What every command on ``plans`` does first; a failure is logged, never fatal (the
    command's own work matters more, and the next command tries again)."""
    try:
        sweep_leftovers(plans, catalog)
    except (DrkitError, OSError) as error:
        detail = error.message if isinstance(error, DrkitError) else str(error)
        log.warning("could not clean up after earlier drkit processes: %s", detail)


def render(report: CleanupReport, *, dry_run: bool) -> None:
    for item in report.leftovers:
        detail = f": {item.detail}" if item.detail else ""
        click.echo(f"{item.state}: {item.description} (pid {item.owner_pid}){detail}")
    verb = "would mark" if dry_run else "marked"
    for run in report.runs:
        click.echo(f"{verb} run {run.id} ({run.kind} of {run.plan}, pid {run.pid}) interrupted")
    if not report.leftovers and not report.runs:
        click.echo("nothing left behind by earlier drkit processes")


@click.command(
    "cleanup",
    epilog="""\b
Examples:
  drkit cleanup                         # every plan's leftovers on this host
  drkit cleanup plans/payments.yaml --dry-run
Exit: 0 all removed (or nothing to do), 1 something could not be removed.""",
)
@click.argument("plans", nargs=-1, type=click.Path())
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
@json_option
@click.pass_obj
def cleanup_command(context: Context, plans: tuple[str, ...], dry_run: bool, as_json: bool) -> int:
    """Remove what drkit processes that died on this host left behind (sandbox clusters,
    scratch databases and their users, staging and scratch folders, their children) once
    sure they are dead, and record their runs as interrupted. Every command on a plan does
    this for that plan before it starts."""
    from drkit.catalog import Catalog

    found = find_plan_files(plans)
    loaded = {plan.name: plan for plan in map(load_plan, found)} if plans else None
    try:
        catalog: Catalog | None = Catalog.open(context.catalog_url)
    except DrkitError as error:
        log.warning("catalog unavailable (%s); runs stay as they are", error.message)
        catalog = None
    try:
        report = sweep_leftovers(loaded, catalog, dry_run=dry_run)
    finally:
        if catalog is not None:
            catalog.close()
    if as_json:
        echo_json({"dry_run": dry_run, **report.to_json()})
    else:
        render(report, dry_run=dry_run)
    return int(ExitCode.FAILED if report.failed else ExitCode.OK)
