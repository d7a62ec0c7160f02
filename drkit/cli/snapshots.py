"""`drkit snapshots`, `drkit info`, `drkit diff`: what exists, what one snapshot holds, and
what changed between two, for the on-call engineer choosing a snapshot to restore."""

from __future__ import annotations

import click

from drkit.actions.inspection import CopyState
from drkit.actions.listing import SnapshotListing, list_snapshots
from drkit.catalog.records import DrillRecord
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.moments import format_local
from drkit.cli.resources import opened_resources
from drkit.cli.tables import render_table
from drkit.repository import SnapshotEntry
from drkit.units import humanize_bytes

NAMES_HELP = (
    "SNAPSHOT is an id, enough of its start to be unique, latest, or latest~N (the Nth "
    "before the newest)."
)
store_option = click.option(
    "--store",
    "store_name",
    metavar="NAME",
    help="Read this store's own sealed manifests (opened and authenticated), not the catalog.",
)


@click.command(
    "snapshots",
    epilog="""\b
Examples:
  drkit snapshots plans/payments.yaml
  drkit snapshots plans/payments.yaml --store s3-euw1    # from the store, without the catalog
  drkit snapshots plans/payments.yaml --without-key old-key   # what still needs a retiring key
Times are in this machine's zone. SIZE is the data a restore writes. VERIFIED counts the
stores whose last `drkit verify` of the snapshot passed; DRILLED is its newest drill.
With --store, every manifest is opened: a snapshot whose manifest does not authenticate is
listed as damaged, and stores lacking newer snapshots that others hold are named.""",
)
@click.argument("plan_file", type=click.Path())
@store_option
@click.option(
    "--without-key",
    "without_key",
    metavar="KEY",
    help="Only snapshots some artifact of which was not written for KEY (key rotation).",
)
@json_option
@click.pass_obj
def snapshots_command(
    context: Context,
    plan_file: str,
    store_name: str | None,
    without_key: str | None,
    as_json: bool,
) -> int:
    """List the snapshots of PLAN, newest first: from the catalog, or a store's manifests."""
    with opened_resources(context, plan_file, catalog_optional=True) as resources:
        listing = list_snapshots(resources, store_name=store_name)
    if without_key is not None:
        listing.entries = [e for e in listing.entries if without_key not in e.keys]
    if as_json:
        echo_json(listing.to_json())
        return 0
    if not listing.entries:
        click.echo("no snapshots")
    rows = [snapshot_row(entry, listing) for entry in listing.entries]
    header = ("ID", "TAKEN", "STATUS", "SIZE", "SOURCES", "STORES", "VERIFIED", "DRILLED")
    for line in render_table(header, rows) if rows else []:
        click.echo(line)
    if any(entry.status == "listed" for entry in listing.entries):
        click.echo(
            "note: listed = found in the stores' listings, manifests not opened "
            "(--store NAME opens and authenticates them, with sizes and sources)",
            err=True,
        )
    for line in listing.lagging:
        click.echo(f"warning: {line}", err=True)
    return 0


def snapshot_row(entry: SnapshotEntry, listing: SnapshotListing) -> list[str]:
    note = "" if entry.authenticated else "  (0.1.0 manifest, not authenticated)"
    problems = "; ".join(f"{name}: {why}" for name, why in entry.problems.items())
    if problems:
        note += f"  [{problems}]"
    return [
        entry.snapshot_id,
        format_local(entry.taken_at) if entry.taken_at else "?",
        entry.status,
        humanize_bytes(entry.size) if entry.size is not None else "?",
        ",".join(entry.sources) or "?",
        ",".join(entry.stores) or "-",
        describe_verification(listing.copies.get(entry.snapshot_id), entry.stores),
        describe_drills(listing.drills.get(entry.snapshot_id, []) if listing.has_catalog else None)
        + note,
    ]


def describe_verification(copies: list[CopyState] | None, stores: list[str]) -> str:
    """``ok 2/2``: stores whose last verify passed, of those holding the snapshot;
    ``FAILED 1/2`` when a verify failed; ``never`` when none ran; ``?`` when the catalog
    does not know the snapshot."""
    if copies is None:
        return "?"
    held = [copy for copy in copies if copy.store in stores]
    failed = sum(1 for copy in held if copy.verify_ok is False)
    passed = sum(1 for copy in held if copy.verify_ok is True)
    if failed:
        return f"FAILED {failed}/{len(stores)}"
    if passed:
        return f"ok {passed}/{len(stores)}"
    return "never"


def describe_drills(drills: list[DrillRecord] | None) -> str:
    """The newest drill's outcome (capitals when it did not pass), ``never``, or ``?``
    without a catalog."""
    if drills is None:
        return "?"
    if not drills:
        return "never"
    outcome = drills[0].outcome
    return outcome if outcome == "ok" else outcome.upper()


@click.command(
    "info",
    epilog=f"""\b
Examples:
  drkit info plans/payments.yaml latest
  drkit info plans/payments.yaml 20261127T1612 --json
  drkit info plans/payments.yaml latest~1 --store s3-euw1   # open that store's manifest
{NAMES_HELP}""",
)
@click.argument("plan_file", type=click.Path())
@click.argument("snapshot")
@store_option
@json_option
@click.pass_obj
def info_command(
    context: Context, plan_file: str, snapshot: str, store_name: str | None, as_json: bool
) -> int:
    """Show one snapshot of PLAN: its sources, formats and sizes, tables with row counts,
    files, keys, the stores holding it with their verify state, and its drills."""
    from drkit.actions.inspection import inspect_snapshot
    from drkit.cli.snapshot_views import render_info

    with opened_resources(context, plan_file, catalog_optional=True) as resources:
        info = inspect_snapshot(resources, snapshot, store_name=store_name)
    if as_json:
        echo_json(info.to_json())
    else:
        for line in render_info(info):
            click.echo(line)
    return 0


@click.command(
    "diff",
    epilog=f"""\b
Examples:
  drkit diff plans/payments.yaml latest~1 latest
  drkit diff plans/payments.yaml 20261127T0900 20261127T1000 --json
{NAMES_HELP}
Compares what each capture recorded: tables (row counts, and content digests where the
snapshot has them), files (hashes), schema. Exits 0 whether or not anything changed.""",
)
@click.argument("plan_file", type=click.Path())
@click.argument("first")
@click.argument("second")
@store_option
@json_option
@click.pass_obj
def diff_command(
    context: Context,
    plan_file: str,
    first: str,
    second: str,
    store_name: str | None,
    as_json: bool,
) -> int:
    """Show what changed in PLAN's data from snapshot FIRST to snapshot SECOND: tables whose
    rows or content changed, tables and files added or removed, files whose hash changed."""
    from drkit.actions.comparison import diff_snapshots
    from drkit.cli.snapshot_views import render_diff

    with opened_resources(context, plan_file, catalog_optional=True) as resources:
        diff = diff_snapshots(resources, first, second, store_name=store_name)
    if as_json:
        echo_json(diff.to_json())
    else:
        for line in render_diff(diff):
            click.echo(line)
    return 0
