"""`drkit backup`: take a snapshot."""

from __future__ import annotations

import click

from drkit.actions.backup import BackupResult, backup
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.outcomes import exit_code
from drkit.cli.progress import byte_progress
from drkit.cli.resources import opened_resources, plan_lock, wait_for_lock_option
from drkit.plan.durations import humanize_seconds
from drkit.preflight import require_ready
from drkit.units import humanize_bytes


@click.command(
    "backup",
    epilog="""\b
Examples:
  drkit backup plans/payments.yaml
  drkit backup plans/payments.yaml --json | jq .outcome
  drkit backup plans/payments.yaml --wait-for-lock 15m   # beside a scheduled `drkit run`
Exit: 0 ok, 3 degraded (copy policy met, a store failed), 5 locked (another drkit is
working on the plan), 1 failed.""",
)
@click.argument("plan_file", type=click.Path())
@wait_for_lock_option
@json_option
@click.pass_obj
def backup_command(
    context: Context, plan_file: str, wait_for_lock: str | None, as_json: bool
) -> int:
    """Snapshot every source of PLAN once and ship it to all its stores at once."""
    with (
        opened_resources(context, plan_file) as resources,
        byte_progress(enabled=not as_json and not context.quiet) as progress,
    ):
        require_ready(resources.plan, "backup", plan_file)
        with plan_lock(resources, wait_for_lock):
            result = backup(resources, progress=progress)
    if as_json:
        echo_json(result.to_json())
    else:
        render_backup(result)
    return exit_code(result.outcome)


def render_backup(result: BackupResult) -> None:
    stores = ", ".join(f"{store.store} {'ok' if store.ok else 'FAILED'}" for store in result.stores)
    click.echo(
        f"snapshot {result.snapshot_id}: {humanize_bytes(result.plaintext_bytes)} read, "
        f"{humanize_bytes(result.stored_bytes)} stored, {humanize_seconds(result.seconds)}; "
        f"{stores} -> {result.outcome.value}"
    )
    for store in result.stores:
        if not store.ok:
            click.echo(f"  store {store.store} ({store.region}) failed: {store.error}", err=True)
    for warning in result.warnings:
        click.echo(f"  warning: {warning}", err=True)
    if result.error and not result.stores:
        click.echo(f"  {result.error}", err=True)
    elif result.error and all(not s.ok for s in result.stores):
        click.echo(f"  reason: {result.error}", err=True)
