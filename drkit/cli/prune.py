"""`drkit prune`: apply the plan's retention policy to every store."""

from __future__ import annotations

import click

from drkit.actions.prune import PruneResult, StorePrune, prune
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.outcomes import exit_code
from drkit.cli.resources import opened_resources, plan_lock, wait_for_lock_option


@click.command(
    "prune",
    epilog="""\b
Examples:
  drkit prune plans/payments.yaml --dry-run        # what would go, and why the rest stays
  drkit prune plans/payments.yaml
  drkit prune plans/payments.yaml --json | jq '.stores[].deleted'
Never deleted: the newest snapshot meeting the copy policy, the newest drill-verified one,
and objects still under S3 Object Lock retention (reported as locked).
Exit: 0 ok, 3 degraded (some store could not be pruned), 1 no store could be pruned.""",
)
@click.argument("plan_file", type=click.Path())
@click.option("--dry-run", is_flag=True, help="Show what would be deleted and why; change nothing.")
@wait_for_lock_option
@json_option
@click.pass_obj
def prune_command(
    context: Context, plan_file: str, dry_run: bool, wait_for_lock: str | None, as_json: bool
) -> int:
    """Delete the snapshots of PLAN that its retention policy no longer keeps."""
    with (
        opened_resources(context, plan_file) as resources,
        plan_lock(resources, wait_for_lock, needed=not dry_run),
    ):
        result = prune(resources, dry_run=dry_run)
    if as_json:
        echo_json(result.to_json())
    else:
        render_prune(result)
    return exit_code(result.outcome)


def render_prune(result: PruneResult) -> None:
    """One line per store; a dry run adds why each kept snapshot stays."""
    for store in result.stores:
        click.echo(describe_store(store, dry_run=result.dry_run))
        if result.dry_run:
            for snapshot_id, reasons in store.kept.items():
                click.echo(f"  keep {snapshot_id}: {', '.join(reasons)}")
        if store.error is not None:
            click.echo(f"  store {store.store} could not be pruned: {store.error}", err=True)


def describe_store(store: StorePrune, *, dry_run: bool) -> str:
    verb = "would delete" if dry_run else "deleted"
    line = f"{store.store}: kept {len(store.kept)}, {verb} {len(store.deleted)}"
    if store.deleted:
        line += f" ({', '.join(store.deleted)})"
    if store.locked:
        held = ", ".join(
            f"{snapshot_id} locked until {until.isoformat(timespec='seconds')}"
            for snapshot_id, until in store.locked.items()
        )
        line += f"; {len(store.locked)} skipped ({held})"
    if store.leftovers:
        verb = "would remove" if dry_run else "removed"
        line += f"; {verb} the leftovers of {len(store.leftovers)} uncommitted backup(s)"
    if store.error is not None:
        line += "; FAILED"
    return line
