"""The drill of a PITR source: restore to a random moment inside a store's recoverable window
into a throwaway data directory, and prove where it landed.

With the opt-in heartbeat (``pitr.heartbeat_every``), the restored ``drkit_heartbeat`` table
must hold no row later than the target, and its newest row must be at most one heartbeat
interval plus a second before it: recovery stopped at the moment asked for, not earlier and
not later. The RPO recorded is measured from the data: now minus the window's end (the newest
moment a restore can reach).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg

from drkit.actions.checks import CheckResult, copy_checks, moment_checks
from drkit.actions.drill import DrillResult, _judge, run_recorded
from drkit.actions.pitr import PitrRequest, restore_to_moment, windows_for
from drkit.actions.resources import Resources
from drkit.archive.window import Window
from drkit.errors import DrkitError, UsageError, describe_failure
from drkit.leases import private_directory
from drkit.plan.schema import MysqlSource, PostgresqlSource, SqliteSource
from drkit.sandboxes import recovered_cluster
from drkit.sandboxes.cluster import choose_parent_directory
from drkit.sources.base import Target
from drkit.sources.urls import parse_database_url
from drkit.sources.wal_stream import HEARTBEAT_TABLE, source_password

log = logging.getLogger(__name__)
PHASES = ("locate", "fetch", "decrypt", "load", "replay", "checks")
LANDING_SLACK = timedelta(seconds=1)


def choose_window(windows: list[Window], store: str | None) -> Window:
    usable = [w for w in windows if not w.is_empty and (store is None or w.store == store)]
    if not usable:
        where = f"store {store}" if store else "any store"
        raise UsageError(
            f"{where} has no recoverable window to drill",
            hint="run `drkit archive PLAN` and a base backup (`drkit backup PLAN`) first",
        )
    return usable[0]


def random_moment(window: Window, chance: random.Random) -> datetime:
    assert window.start is not None and window.end is not None
    span = (window.end - window.start).total_seconds()
    return window.start + timedelta(seconds=chance.uniform(0, span))


def pitr_drill(
    resources: Resources,
    source: PostgresqlSource,
    *,
    store: str | None = None,
    chance: random.Random | None = None,
) -> DrillResult:
    """One drill of ``source`` to a random moment of one store's window."""
    result = DrillResult(resources.plan.name, None, store, datetime.now(UTC))
    result.sandbox_kinds = ["restored-postgresql"]
    try:
        window = choose_window(windows_for(resources, source), store)
        target = random_moment(window, chance or random.Random())
        result.store = window.store
        result.snapshot_id = window.base_backups[-1]
        if window.end is not None:
            result.rpo_seconds = (result.started_at - window.end).total_seconds()
        _restore_and_check(resources, source, window, target, result)
        result.rto_seconds = sum(result.phases.get(phase, 0.0) for phase in PHASES)
    except DrkitError as error:
        result.error = describe_failure(error)
        log.error("point-in-time drill of %s failed: %s", source.name, result.error)
    _judge(resources, result)
    return result


def _restore_and_check(
    resources: Resources,
    source: PostgresqlSource,
    window: Window,
    target: datetime,
    result: DrillResult,
) -> None:
    parent = choose_parent_directory(for_another_user=bool(recovered_cluster.run_as_prefix()))
    with private_directory("drkit-pitr-drill-", parent=parent, plan=resources.plan.name) as folder:
        data = folder / "data"
        recovered_cluster.hand_over(folder)  # the server's user must reach its data
        try:
            request = PitrRequest(
                recovered_cluster.RecoveryTarget(target),
                data,
                source=source.name,
                store_first=window.store,
                force=True,
            )
            restored = restore_to_moment(resources, request)
            result.snapshot_id = restored.base_backup
            result.phases.update(restored.phases)
            checks_started = time.monotonic()
            result.checks = [
                CheckResult("target", None, target.isoformat(), f"store {window.store}"),
                *copy_checks(source.name, restored.faults),
                *landing_checks(source, restored.port, target),
                *moment_checks(resources, source.name, recovered_target(source, restored.port)),
            ]
            result.phases["checks"] = time.monotonic() - checks_started
        finally:
            recovered_cluster.stop(data, immediate=True)


def recovered_target(source: PostgresqlSource, port: int) -> Target:
    """The source's database in the recovered cluster (a physical copy: the source's own
    user and password), for the plan's sql checks (run read-only)."""
    url = replace(parse_database_url(source.url), host="127.0.0.1", port=port, options=())
    return Target(str(url), source_password(source))


def landing_checks(source: PostgresqlSource, port: int, target: datetime) -> list[CheckResult]:
    """Where recovery landed, from the heartbeat rows (when the plan writes them)."""
    assert source.pitr is not None
    every = source.pitr.heartbeat_every
    if every is None:
        return [CheckResult("heartbeat", None, None, "no heartbeat configured: landing unchecked")]
    url = parse_database_url(source.url)
    password = source_password(source)
    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=port,
            dbname=url.database,
            user=url.user,
            password=password.reveal() if password else None,
            connect_timeout=10,
        ) as connection:
            newest, later = connection.execute(
                f"SELECT max(at) FILTER (WHERE at <= %s), count(*) FILTER (WHERE at > %s) "
                f"FROM {HEARTBEAT_TABLE}",
                (target, target),
            ).fetchone() or (None, 0)
    except psycopg.Error as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [CheckResult("heartbeat", False, None, f"cannot read {HEARTBEAT_TABLE}: {first}")]
    none_later = CheckResult(
        "no heartbeat after the target", later == 0, int(later), f"{later} rows later"
    )
    if newest is None:
        return [none_later, CheckResult("newest heartbeat", False, None, "no heartbeat row")]
    gap = (target - newest).total_seconds()
    close = newest >= target - every - LANDING_SLACK
    detail = f"{gap:.3f}s before the target (allowed {every.total_seconds() + 1:.0f}s)"
    return [none_later, CheckResult("newest heartbeat", close, round(gap, 3), detail)]


def drill_pitr_sources(
    resources: Resources, *, store: str | None, all_stores: bool
) -> list[DrillResult]:
    """A recorded drill per PITR source (and per store with ``all_stores``)."""
    from drkit.actions.binlog_pitr_drill import binlog_pitr_drill
    from drkit.actions.sqlite_pitr import sqlite_pitr_drill
    from drkit.archive.ledger import continuous_sources, windows_of

    results = []
    for source in continuous_sources(resources.plan):
        stores: list[str | None] = [store]
        if all_stores:
            catalog = resources.catalog
            windows = windows_of(catalog, resources.plan, source) if catalog else []
            # no window anywhere still gets its drill: it fails, saying so, rather than none
            stores = [w.store for w in windows if not w.is_empty] or [None]
        for each in stores:
            drill = (
                binlog_pitr_drill
                if isinstance(source, MysqlSource)
                else sqlite_pitr_drill
                if isinstance(source, SqliteSource)
                else pitr_drill
            )
            perform = functools.partial(drill, resources, source, store=each)  # type: ignore[arg-type]
            results.append(run_recorded(resources, None, each, perform))
    return results
