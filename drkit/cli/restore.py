"""`drkit restore`: the on-call command. Fast, safe and obvious."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from drkit.actions.restore import PreparedRestore, RestoreRequest, execute_restore, prepare_restore
from drkit.actions.tracking import tracked_run
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.error_report import report_error
from drkit.cli.moments import describe_moment, parse_moment
from drkit.cli.outcomes import exit_code
from drkit.cli.progress import phase_progress
from drkit.cli.resources import opened_resources, plan_lock, wait_for_lock_option
from drkit.errors import ExitCode, RefusedError, UsageError
from drkit.outcome import Outcome
from drkit.plan.durations import humanize_seconds
from drkit.preflight import require_ready
from drkit.units import humanize_bytes


def parse_before(text: str | None, *, quiet: bool) -> datetime | None:
    """--before as an instant, echoed back (stderr) with its zone; None when not given."""
    if text is None:
        return None
    moment = parse_moment(text, option="--before")
    if not quiet:
        click.echo(f"--before {text}: {describe_moment(moment)}", err=True)
    return moment


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
        if item.missing_roles:
            click.echo(f"    roles missing on the target: {', '.join(item.missing_roles)}")
    expected = (
        f"; the last drill took {humanize_seconds(prepared.expected_seconds)}"
        if prepared.expected_seconds
        else ""
    )
    click.echo(f"total {humanize_bytes(prepared.total_bytes)}{expected}")
    if prepared.prediction is not None:
        prediction = prepared.prediction
        phases = ", ".join(f"{k} {humanize_seconds(v)}" for k, v in prediction.phases.items())
        click.echo(
            f"predicted: about {humanize_seconds(prediction.seconds)} ({phases}; from the "
            f"last {prediction.runs} restore(s) and drill(s) from store "
            f"{prepared.stores[0] if prepared.stores else 'any'})"
        )
    if not prepared.authenticated:
        click.echo(
            "warning: this snapshot's manifest is in the 0.1.0 format, which nothing "
            "authenticates; every artifact is still checked against it",
            err=True,
        )
    for name, reason in prepared.copies.failures.items():
        click.echo(f"warning: store {name} cannot prove this snapshot: {reason}", err=True)
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
        if item.previous and item.previous_removed:
            click.echo(f"    the replaced {item.target.location} was removed (--drop-previous)")
        elif item.previous:
            click.echo(f"    the replaced data is kept as {item.previous}; remove it with:")
            click.echo(f"      {item.previous_removal}")
        for what in item.left_out:
            click.echo(f"    left out: {what}")
        if item.differences:
            click.echo(f"    {item.target.location} was left as it was")
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
  drkit restore plans/payments.yaml --parallel 1              # one source after the other
  drkit restore plans/payments.yaml --force --drop-previous --roles create   # new server
  drkit restore plans/orders.yaml --at 2026-12-07T09:41:00Z \\
        --to orders=/var/lib/postgresql/restored --port 5433    # point in time (pitr:)
  drkit restore plans/ledger.yaml --at 2026-12-07T09:41:00Z \\
        --to ledger=ledger_0941                                 # MariaDB: into a new database
  drkit restore plans/ledger.yaml --gtid 0-1-2041 --to ledger=ledger_tx2041   # up to a GTID
  drkit restore plans/sessions.yaml --at 2026-12-07T09:41:00Z \\
        --to sessions=/var/lib/app/sessions-0941.db            # SQLite: a new file
--force loads beside the target, verifies, then swaps by renaming: the target is never dropped
first; the replaced one is kept (`_drkit_previous_<time>`) unless --drop-previous.
Exit: 0 restored and verified, 9 refused (non-empty target without --force, a system database,
      roles missing with --roles require, not enough staging space), 7 no intact copy or the
      restored data differs (named; the target is left as it was), 6 no store reachable,
      10 no such snapshot.""",
)
@click.argument("plan_file", type=click.Path())
@click.option("--snapshot", "snapshot_id", metavar="ID", help="Restore this snapshot.")
@click.option(
    "--before",
    metavar="TIME",
    help="Newest snapshot taken before TIME: ISO 8601 (without a zone: local time), or a "
    "duration meaning that long ago (`90m`, `2h`).",
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
@click.option(
    "--at",
    metavar="TIME",
    help="Point-in-time (a source with pitr:): recover to TIME, transactions committed at "
    "TIME included (MariaDB: to the second, see docs/pitr.md). PostgreSQL needs --to NAME=DIR.",
)
@click.option(
    "--gtid",
    metavar="GTID",
    help="Point-in-time, MariaDB: replay the binlog up to and including transaction GTID "
    "(DOMAIN-SERVER-SEQUENCE, e.g. 0-1-2041) instead of a moment.",
)
@click.option(
    "--latest",
    is_flag=True,
    help="Point-in-time: recover to the end of the WAL the stores hold. Needs --to NAME=DIR.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Point-in-time: the port the recovered server listens on (127.0.0.1); default a free one.",
)
@click.option("--store", "store_first", metavar="NAME", help="Try this store first.")
@click.option(
    "--force", is_flag=True, help="Replace non-empty targets (says exactly what it replaces)."
)
@click.option(
    "--drop-previous",
    is_flag=True,
    help="With --force: remove the replaced target once the restored one is swapped in.",
)
@click.option(
    "--roles",
    type=click.Choice(["require", "create", "skip"]),
    help="Roles (accounts) the snapshot's owners and grants name that the target server lacks: "
    "refuse before loading (require; PostgreSQL's default), create them without login or "
    "password (create), or leave out what names them, saying so (skip; MariaDB's default).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation on a TTY.")
@click.option("--dry-run", is_flag=True, help="Show what would be restored where, change nothing.")
@wait_for_lock_option
@click.option(
    "--parallel",
    type=click.IntRange(1, 16),
    metavar="N",
    help="Restore up to N sources at once (default: 2 on 2 cores or more, else 1); no source "
    "loads before every artifact is fetched and proven intact.",
)
@json_option
@click.pass_obj
def restore_command(
    context: Context,
    plan_file: str,
    snapshot_id: str | None,
    before: str | None,
    sources: tuple[str, ...],
    targets: tuple[str, ...],
    at: str | None,
    gtid: str | None,
    latest: bool,
    port: int | None,
    store_first: str | None,
    force: bool,
    drop_previous: bool,
    roles: str | None,
    yes: bool,
    dry_run: bool,
    wait_for_lock: str | None,
    parallel: int | None,
    as_json: bool,
) -> int:
    """Restore the newest complete snapshot of PLAN (or one you pick), failing over between
    stores; works without the catalog, from the stores' manifests. For a PostgreSQL source
    with pitr:, --at/--before/--latest recover a new data directory to a moment."""
    if (
        at is not None
        or gtid is not None
        or latest
        or port is not None
        or _is_physical(plan_file, before, sources)
    ):
        return _restore_to_moment(
            context,
            plan_file,
            at,
            before,
            latest,
            gtid,
            sources,
            targets,
            port,
            store_first,
            force,
            as_json,
        )
    request = RestoreRequest(
        snapshot_id=snapshot_id,
        before=parse_before(before, quiet=context.quiet),
        sources=list(sources),
        targets=parse_targets(targets),
        store_first=store_first,
        force=force,
        dry_run=dry_run,
        roles=roles,
    )
    with opened_resources(context, plan_file, catalog_optional=True) as resources:
        require_ready(resources.plan, "restore", plan_file, sources=sources)
        prepared = prepare_restore(resources, request)
        if dry_run:
            if as_json:
                echo_json(
                    {"dry_run": True, "refused": bool(prepared.refusal), **prepared.to_json()}
                )
            else:
                render_plan(prepared, dry_run=True)
            if prepared.refusal is not None and as_json:
                # the document above says it was refused: one document on stdout, not two
                report_error(prepared.refusal, command="drkit restore", as_json=False)
                return int(prepared.refusal.exit_code)
            if prepared.refusal is not None:
                raise prepared.refusal  # the preview says what the real run would refuse
            return 0
        if not as_json:
            render_plan(prepared, dry_run=False)
        if not yes and sys.stdin.isatty() and not click.confirm("Restore now?", default=False):
            raise RefusedError("restore cancelled at the prompt", hint="nothing was changed")
        # over the plan's own databases and files: never beside a backup or prune of them
        to_origin = any(item.source not in request.targets for item in prepared.items)
        with (
            plan_lock(resources, wait_for_lock, needed=to_origin),
            tracked_run(resources, "restore") as tracker,
            phase_progress(enabled=not as_json and not context.quiet, what="restore") as progress,
        ):
            tracker.summary = prepared.to_json()
            execute_restore(
                resources,
                prepared,
                force=force,
                progress=progress,
                drop_previous=drop_previous,
                roles=roles,
                workers=parallel,
            )
            differing = [item.source for item in prepared.items if item.differences]
            tracker.outcome = Outcome.FAILED if differing else Outcome.OK
            if differing:
                tracker.error = f"restored data differs from the backup for {', '.join(differing)}"
            tracker.summary = prepared.to_json()
        outcome = tracker.outcome
    if as_json:
        echo_json({"dry_run": False, "outcome": outcome.value, **prepared.to_json()})
    else:
        render_result(prepared)
    return exit_code(outcome, failed=ExitCode.INTEGRITY)


def _restore_to_moment(
    context: Context,
    plan_file: str,
    at: str | None,
    before: str | None,
    latest: bool,
    gtid: str | None,
    sources: tuple[str, ...],
    targets: tuple[str, ...],
    port: int | None,
    store_first: str | None,
    force: bool,
    as_json: bool,
) -> int:
    from drkit.actions.binlog_pitr import choose_binlog_source
    from drkit.actions.sqlite_pitr import choose_sqlite_source
    from drkit.cli.pitr import make_target, run_binlog_restore, run_pitr_restore, run_sqlite_restore

    moment = parse_moment(at, option="--at") if at is not None else None
    if moment is not None and not context.quiet:
        click.echo(f"--at {at}: {describe_moment(moment)}", err=True)
    target = make_target(moment, parse_before(before, quiet=context.quiet), latest)
    if gtid is not None and (target.moment is not None or latest):
        raise UsageError("--gtid excludes --at, --before and --latest")
    if len(sources) > 1:
        raise UsageError("a point-in-time restore takes one --source")
    with opened_resources(context, plan_file, catalog_optional=True) as resources:
        require_ready(resources.plan, "restore", plan_file, sources=sources)
        sqlite_source = choose_sqlite_source(resources, sources[0] if sources else None)
        if sqlite_source is not None:
            return run_sqlite_restore(
                resources,
                sqlite_source,
                target,
                parse_targets(targets),
                store_first=store_first,
                force=force,
                as_json=as_json,
            )
        binlog_source = choose_binlog_source(resources, sources[0] if sources else None)
        if binlog_source is not None:
            return run_binlog_restore(
                resources,
                binlog_source,
                target.moment,
                parse_targets(targets),
                store_first=store_first,
                force=force,
                as_json=as_json,
                gtid=gtid,
            )
        if gtid is not None:
            raise UsageError(
                "--gtid needs a MariaDB/MySQL source with pitr:",
                hint="name it with --source NAME",
            )
        return run_pitr_restore(
            resources,
            target,
            parse_targets(targets),
            source=sources[0] if sources else None,
            port=port,
            store_first=store_first,
            force=force,
            as_json=as_json,
        )


def _is_physical(plan_file: str, before: str | None, sources: tuple[str, ...]) -> bool:
    """--before on a plan whose (selected) sources are all pitr sources means a moment."""
    if before is None:
        return False
    parse_moment(before, option="--before")  # a bad TIME is a usage error before the plan is read
    from drkit.plan.loader import load_plan
    from drkit.plan.schema import MysqlSource, PostgresqlSource

    plan = load_plan(plan_file)
    chosen = [s for s in plan.sources if not sources or s.name in sources]
    return bool(chosen) and all(
        isinstance(s, PostgresqlSource | MysqlSource) and s.pitr is not None for s in chosen
    )
