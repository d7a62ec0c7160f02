"""`drkit restore`: the on-call command. Fast, safe and obvious."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from drkit.actions.restore import PreparedRestore, RestoreRequest, execute_restore, prepare_restore
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.resources import opened_resources
from drkit.errors import ExitCode, RefusedError, UsageError
from drkit.plan.durations import humanize_seconds, parse_duration
from drkit.report.units import humanize_bytes


def parse_time(text: str) -> datetime:
    """ISO 8601 (UTC when no zone is given) or a duration meaning that long ago (`90m`)."""
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--before {text!r}: expected e.g. 2026-11-27T14:05:00Z or 90m") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_targets(pairs: tuple[str, ...]) -> dict[str, str]:
    targets = {}
    for pair in pairs:
        name, sep, target = pair.partition("=")
        if not sep or not name or not target:
            raise UsageError(f"--to {pair!r}: expected NAME=TARGET (a URL, database name or path)")
        targets[name] = target
    return targets


def render_plan(prepared: PreparedRestore, *, dry_run: bool) -> None:
    taken = prepared.manifest.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    click.echo(
        f"snapshot {prepared.snapshot.snapshot_id} (taken {taken}, "
        f"from {prepared.snapshot.origin}); stores in order: {', '.join(prepared.stores)}"
    )
    for item in prepared.items:
        replaces = f"  REPLACES {item.replaces}" if item.replaces else ""
        click.echo(
            f"  {item.source} ({item.type}, {humanize_bytes(item.size)}) -> "
            f"{item.target.location}{replaces}"
        )
    expected = (
        f"; the last drill took {humanize_seconds(prepared.expected_seconds)}"
        if prepared.expected_seconds
        else ""
    )
    click.echo(f"total {humanize_bytes(prepared.total_bytes)}{expected}")
    if dry_run:
        click.echo("dry run: nothing was changed")


def render_result(prepared: PreparedRestore) -> None:
    phases = ", ".join(
        f"{name} {humanize_seconds(prepared.phases.get(name, 0.0))}"
        for name in ("locate", "fetch", "decrypt", "load", "verify")
    )
    total = sum(prepared.phases.values())
    for item in prepared.items:
        state = "verified" if not item.differences else "DIFFERS: " + "; ".join(item.differences)
        via = f" (after failover: {'; '.join(item.failovers)})" if item.failovers else ""
        click.echo(f"  {item.source} -> {item.target.location} from {item.store}{via}: {state}")
    click.echo(
        f"restored snapshot {prepared.snapshot.snapshot_id} in {humanize_seconds(total)} ({phases})"
    )


@click.command(
    "restore",
    epilog="""\b
Examples:
  drkit restore plans/payments.yaml --dry-run
  drkit restore plans/payments.yaml --before 2026-11-27T14:05:00Z --source orders-db \\
        --to orders-db=orders_recovered
  drkit restore plans/payments.yaml --store s3-euw1 --yes     # the us-east-1 region is down
Exit: 0 restored and verified, 9 refused (non-empty target without --force),
      7 no intact copy, 6 no store reachable, 10 no such snapshot.""",
)
@click.argument("plan_file", type=click.Path())
@click.option("--snapshot", "snapshot_id", metavar="ID", help="Restore this snapshot.")
@click.option(
    "--before",
    metavar="TIME",
    help="Newest snapshot taken before TIME (ISO 8601, or e.g. 90m ago as `90m`).",
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="NAME",
    help="Restore only this source (repeatable).",
)
@click.option(
    "--to",
    "targets",
    multiple=True,
    metavar="NAME=TARGET",
    help="Restore a source elsewhere: URL, database name, or path (repeatable).",
)
@click.option("--store", "store_first", metavar="NAME", help="Try this store first.")
@click.option(
    "--force", is_flag=True, help="Replace non-empty targets (says exactly what it replaces)."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation on a TTY.")
@click.option("--dry-run", is_flag=True, help="Show what would be restored where, change nothing.")
@json_option
@click.pass_obj
def restore_command(
    context: Context,
    plan_file: str,
    snapshot_id: str | None,
    before: str | None,
    sources: tuple[str, ...],
    targets: tuple[str, ...],
    store_first: str | None,
    force: bool,
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> int:
    """Restore the newest complete snapshot of PLAN (or one you pick), failing over between
    stores; works without the catalog, from the stores' manifests."""
    request = RestoreRequest(
        snapshot_id=snapshot_id,
        before=parse_time(before) if before else None,
        sources=list(sources),
        targets=parse_targets(targets),
        store_first=store_first,
        force=force,
        dry_run=dry_run,
    )
    with opened_resources(context, plan_file, catalog_optional=True) as resources:
        prepared = prepare_restore(resources, request)
        if dry_run:
            if as_json:
                echo_json(
                    {"dry_run": True, "refused": bool(prepared.refusal), **prepared.to_json()}
                )
            else:
                render_plan(prepared, dry_run=True)
            if prepared.refusal is not None:
                raise prepared.refusal  # the preview says what the real run would refuse
            return 0
        if not as_json:
            render_plan(prepared, dry_run=False)
        if not yes and sys.stdin.isatty() and not click.confirm("Restore now?", default=False):
            raise RefusedError("restore cancelled at the prompt", hint="nothing was changed")
        catalog = resources.catalog
        run_id = catalog.start_run(resources.plan.name, "restore") if catalog else None
        outcome, error = "failed", "interrupted"
        try:
            execute_restore(resources, prepared, force=force)
            differing = [item.source for item in prepared.items if item.differences]
            outcome = "failed" if differing else "ok"
            error = (
                f"restored data differs from the backup for {', '.join(differing)}"
                if differing
                else ""
            )
        except Exception as failure:
            error = getattr(failure, "message", str(failure)).splitlines()[0]
            raise
        finally:
            if catalog is not None and run_id is not None:
                catalog.finish_run(run_id, outcome, error=error or None, summary=prepared.to_json())
    if as_json:
        echo_json({"dry_run": False, "outcome": outcome, **prepared.to_json()})
    else:
        render_result(prepared)
    return int(ExitCode.OK if outcome == "ok" else ExitCode.INTEGRITY)
