"""`drkit restore --at/--before/--latest` for a source with pitr: a new data directory
recovered to a moment, started on a port and left running."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import click

from drkit.actions.binlog_pitr import BinlogPitrRequest, restore_binlog_to_moment
from drkit.actions.pitr import PitrRequest, PitrResult, restore_to_moment
from drkit.actions.resources import Resources
from drkit.actions.tracking import tracked_run
from drkit.cli.context import echo_json
from drkit.errors import UsageError
from drkit.outcome import Outcome
from drkit.plan.durations import humanize_seconds
from drkit.plan.schema import MysqlSource, SqliteSource
from drkit.sandboxes.recovered_cluster import RecoveryTarget

PHASES = ("locate", "fetch", "decrypt", "load", "replay")


def make_target(at: datetime | None, before: datetime | None, latest: bool) -> RecoveryTarget:
    chosen = [
        name for name, given in (("--at", at), ("--before", before), ("--latest", latest)) if given
    ]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} exclude each other")
    if at is not None:
        return RecoveryTarget(at, inclusive=True)
    if before is not None:
        return RecoveryTarget(before, inclusive=False)
    return RecoveryTarget(None)


def data_directory(targets: dict[str, str], source: str | None) -> tuple[str | None, Path]:
    """--to NAME=DIR: the new data directory (one pitr source at a time)."""
    if len(targets) != 1:
        raise UsageError(
            "a point-in-time restore needs --to NAME=DIR: a new, empty data directory",
            hint="e.g. --to orders=/var/lib/postgresql/restored --port 5433 (docs/pitr.md)",
        )
    name, folder = next(iter(targets.items()))
    if source is not None and name != source:
        raise UsageError(f"--to names {name!r} but --source names {source!r}")
    return name, Path(folder).absolute()


def run_pitr_restore(
    resources: Resources,
    target: RecoveryTarget,
    targets: dict[str, str],
    *,
    source: str | None,
    port: int | None,
    store_first: str | None,
    force: bool,
    as_json: bool,
) -> int:
    name, folder = data_directory(targets, source)
    request = PitrRequest(target, folder, port, name, store_first, force)
    with tracked_run(resources, "restore") as tracker:
        result = restore_to_moment(
            resources,
            request,
            on_phase=phase_printer(as_json),
        )
        tracker.outcome, tracker.summary = Outcome.OK, result.to_json()
    if as_json:
        echo_json({"outcome": "ok", **result.to_json()})
    else:
        render(result)
    return 0


def render(result: PitrResult) -> None:
    where = (
        result.target.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        if result.target
        else "the end of the WAL"
    )
    click.echo(
        f"restored {result.source} to {where} from base backup {result.base_backup} "
        f"(store {result.store}) and {result.wal_files} WAL files"
        + (" (no commit after the target: replayed to the end)" if result.replayed_to_end else "")
    )
    for failover in result.failovers:
        click.echo(f"  failover: {failover}", err=True)
    phases = ", ".join(
        f"{name} {humanize_seconds(result.phases.get(name, 0.0))}" for name in PHASES
    )
    click.echo(f"  phases: {phases}")
    click.echo(
        f"PostgreSQL runs on 127.0.0.1:{result.port} with data in {result.directory}; "
        f"stop it with: pg_ctl -D {result.directory} stop"
    )


def run_binlog_restore(
    resources: Resources,
    source: MysqlSource,
    moment: datetime | None,
    targets: dict[str, str],
    *,
    store_first: str | None,
    force: bool,
    as_json: bool,
    gtid: str | None = None,
) -> int:
    """A MariaDB source: the newest dump before the moment (or the GTID), then its binlog
    replayed."""
    unknown = set(targets) - {source.name}
    if unknown:
        raise UsageError(f"--to names {sorted(unknown)[0]!r}, not the pitr source {source.name!r}")
    request = BinlogPitrRequest(
        moment, targets.get(source.name), source.name, store_first, force, gtid=gtid
    )
    with tracked_run(resources, "restore") as tracker:
        result = restore_binlog_to_moment(
            resources,
            source,
            request,
            on_phase=phase_printer(as_json),
        )
        tracker.outcome, tracker.summary = Outcome.OK, result.to_json()
    if as_json:
        echo_json({"outcome": "ok", **result.to_json()})
        return 0
    where = (
        f"transaction {result.gtid} (included)"
        if result.gtid
        else f"{result.target:%Y-%m-%d %H:%M:%S} UTC (to the second)"
        if result.target
        else "the end of the archived binlog"
    )
    click.echo(
        f"restored {result.source} into database {result.database} at {where} from dump "
        f"{result.dump} (store {result.store}) and {len(result.binlog_files)} binlog files"
    )
    echo_failovers_and_phases(result.failovers, result.phases)
    return 0


def run_sqlite_restore(
    resources: Resources,
    source: SqliteSource,
    target: RecoveryTarget,
    targets: dict[str, str],
    *,
    store_first: str | None,
    force: bool,
    as_json: bool,
) -> int:
    """A SQLite source: the capture generation's base copy, its log replayed to the moment."""
    from drkit.actions.sqlite_pitr import restore_sqlite_to_moment
    from drkit.sources.base import Target

    unknown = set(targets) - {source.name}
    if unknown:
        raise UsageError(f"--to names {sorted(unknown)[0]!r}, not the pitr source {source.name!r}")
    moment = target.moment
    if moment is not None and not target.inclusive:
        moment -= timedelta(microseconds=1)  # --before: strictly before
    path = targets.get(source.name)
    with tracked_run(resources, "restore") as tracker:
        result = restore_sqlite_to_moment(
            resources,
            source,
            moment,
            target=Target(path) if path else None,
            store_first=store_first,
            force=force,
            on_phase=phase_printer(as_json),
        )
        tracker.outcome, tracker.summary = Outcome.OK, result.to_json()
    if as_json:
        echo_json({"outcome": "ok", **result.to_json()})
        return 0
    landed = f"{result.landed_at:%Y-%m-%d %H:%M:%S.%f} UTC" if result.landed_at else "its base copy"
    click.echo(
        f"restored {result.source} into {result.path} as captured at {landed} "
        f"(generation {result.generation}, {len(result.segments)} segments, "
        f"{result.transactions} transactions replayed, integrity_check ok)"
    )
    echo_failovers_and_phases(result.failovers, result.phases)
    return 0


def phase_printer(as_json: bool) -> Callable[[str, str], None] | None:
    """Each phase on stderr as it starts (nothing with --json)."""
    if as_json:
        return None
    return lambda phase, what: click.echo(f"{phase}: {what}", err=True)


def echo_failovers_and_phases(failovers: list[str], phases: dict[str, float]) -> None:
    for failover in failovers:
        click.echo(f"  failover: {failover}", err=True)
    timed = ", ".join(f"{name} {humanize_seconds(value)}" for name, value in phases.items())
    click.echo(f"  phases: {timed}")
