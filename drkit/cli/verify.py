"""`drkit verify`: re-read copies and prove them intact without restoring."""

from __future__ import annotations

import click

from drkit.actions.verify import verify
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.outcomes import exit_code
from drkit.cli.resources import opened_resources
from drkit.errors import ExitCode
from drkit.outcome import Outcome


@click.command(
    "verify",
    epilog="""\b
Examples:
  drkit verify plans/payments.yaml                 # newest snapshot, every store
  drkit verify plans/payments.yaml --all --store s3-euw1
Exit: 0 every copy intact, 7 a copy failed or a store lacks newer snapshots another holds
(the store is named).""",
)
@click.argument("plan_file", type=click.Path())
@click.option("--snapshot", "snapshot_id", metavar="ID", help="Verify this snapshot.")
@click.option("--store", "store_name", metavar="NAME", help="Only this store.")
@click.option("--all", "all_snapshots", is_flag=True, help="Every snapshot, not just the newest.")
@json_option
@click.pass_obj
def verify_command(
    context: Context,
    plan_file: str,
    snapshot_id: str | None,
    store_name: str | None,
    all_snapshots: bool,
    as_json: bool,
) -> int:
    """Re-read every copy in every store: hashes, authentication, manifests."""
    with opened_resources(context, plan_file, catalog_optional=True) as resources:
        result = verify(
            resources, snapshot_id=snapshot_id, store_name=store_name, all_snapshots=all_snapshots
        )
    if as_json:
        echo_json(result.to_json())
    else:
        for check in result.checks:
            state = f"ok ({check.objects} objects)" if check.ok else f"FAILED: {check.error}"
            if check.ok and not check.authenticated:
                state += " (0.1.0 manifest, not authenticated)"
            click.echo(f"{check.snapshot_id}  {check.store}: {state}")
        for line in result.lagging:
            click.echo(f"FAILED: {line}")
        for line in result.behind:
            click.echo(f"warning: {line}", err=True)
    return exit_code(Outcome.OK if result.ok else Outcome.FAILED, failed=ExitCode.INTEGRITY)
