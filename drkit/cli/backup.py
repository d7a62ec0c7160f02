"""`drkit backup`, `drkit snapshots`: take a snapshot; list what exists."""

from __future__ import annotations

import click

from drkit.actions.backup import BackupResult, backup
from drkit.actions.locate import find_snapshots
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.progress import byte_progress
from drkit.cli.resources import opened_resources
from drkit.plan.durations import humanize_seconds
from drkit.report.units import humanize_bytes


@click.command(
    "backup",
    epilog="""\b
Examples:
  drkit backup plans/payments.yaml
  drkit backup plans/payments.yaml --json | jq .outcome
Exit: 0 ok, 3 degraded (copy policy met, a store failed), 1 failed.""",
)
@click.argument("plan_file", type=click.Path())
@json_option
@click.pass_obj
def backup_command(context: Context, plan_file: str, as_json: bool) -> int:
    """Snapshot every source of PLAN once and ship it to all its stores at once."""
    with (
        opened_resources(context, plan_file) as resources,
        byte_progress(enabled=not as_json and not context.quiet) as progress,
    ):
        result = backup(resources, progress=progress)
    if as_json:
        echo_json(result.to_json())
    else:
        render_backup(result)
    return int(result.outcome.exit_code)


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
    if result.error and not result.stores:
        click.echo(f"  {result.error}", err=True)
    elif result.error and all(not s.ok for s in result.stores):
        click.echo(f"  reason: {result.error}", err=True)


@click.command(
    "snapshots",
    epilog="""\b
Examples:
  drkit snapshots plans/payments.yaml
  drkit snapshots plans/payments.yaml --store s3-euw1    # from the store, without the catalog""",
)
@click.argument("plan_file", type=click.Path())
@click.option("--store", "store_name", help="List from this store's manifests, not the catalog.")
@json_option
@click.pass_obj
def snapshots_command(
    context: Context, plan_file: str, store_name: str | None, as_json: bool
) -> int:
    """List the snapshots of PLAN: from the catalog, or from a store's own manifests."""
    with opened_resources(context, plan_file, catalog_optional=True) as resources:
        entries = find_snapshots(resources, store_name=store_name)
    if as_json:
        echo_json([entry.to_json() for entry in entries])
        return 0
    if not entries:
        click.echo("no snapshots")
    for entry in entries:
        when = entry.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC") if entry.taken_at else "?"
        click.echo(f"{entry.snapshot_id}  {when}  {entry.status:<10} {', '.join(entry.stores)}")
    return 0
