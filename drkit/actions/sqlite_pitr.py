"""Point-in-time restore and drill of a SQLite source with ``pitr:``.

Restore: the moment must lie in a store's recoverable window (``sqlite_window``); the newest
capture generation that started by then is fetched (its base copy, then its segments in
order, each from the first store delivering it intact), every record captured at or before
the moment is replayed over the base copy with its chain checked (``sqlite_wal.replay_into``),
the result must pass ``PRAGMA integrity_check``, and it replaces the target file atomically
(refused when the target already holds a database, unless --force), as a snapshot restore.

SQLite's log stamps no time on a transaction: drkit knows when it *read* each one. A restore
to T holds every transaction the capture had read by T, so nothing committed after T, and
it lacks at most what committed in the last capture interval (``ship_partial_every``) before
T. The drill checks exactly that with the heartbeat.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from drkit.actions.checks import CheckResult, copy_checks, moment_checks
from drkit.actions.drill import DrillResult, _judge
from drkit.actions.pitr import check_target
from drkit.actions.pitr_drill import LANDING_SLACK, choose_window, random_moment
from drkit.actions.resources import Resources
from drkit.archive.capture_fetch import CaptureFetcher
from drkit.archive.ledger import sqlite_sources, sqlite_store_windows
from drkit.archive.sqlite_capture import HEARTBEAT_TABLE
from drkit.archive.sqlite_names import generation_time, segment_name
from drkit.archive.window import Window
from drkit.errors import DrkitError, IntegrityError, UsageError, describe_failure
from drkit.leases import private_directory
from drkit.plan.schema import SqliteSource
from drkit.sandboxes.scratch_directory import ScratchDirectory
from drkit.sources.base import Target
from drkit.sources.sqlite import SqliteDatabase, check_integrity
from drkit.sources.sqlite_wal import replay_into

log = logging.getLogger(__name__)


@dataclass
class SqlitePitrResult:
    source: str
    path: str
    generation: str
    target: datetime | None
    window: Window | None
    landed_at: datetime | None = None
    transactions: int = 0
    segments: list[str] = field(default_factory=list)
    stores: list[str] = field(default_factory=list)
    failovers: list[str] = field(default_factory=list)
    #: the failovers away from a damaged or unreadable copy (a drill fails on each)
    faults: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "path": self.path,
            "generation": self.generation,
            "target": self.target.isoformat() if self.target else "latest",
            "landed_at": self.landed_at.isoformat() if self.landed_at else None,
            "transactions_replayed": self.transactions,
            "window": self.window.to_json() if self.window else None,
            "segments": self.segments,
            "stores": self.stores,
            "failovers": self.failovers,
            "phases": {name: round(value, 3) for name, value in self.phases.items()},
        }


def choose_sqlite_source(resources: Resources, name: str | None) -> SqliteSource | None:
    """The SQLite source with pitr: the request names (or the plan's only pitr source);
    None when that is not a SQLite source."""
    from drkit.archive.ledger import continuous_sources

    sources = sqlite_sources(resources.plan)
    if name is not None:
        return next((source for source in sources if source.name == name), None)
    return sources[0] if len(continuous_sources(resources.plan)) == 1 and sources else None


def restore_sqlite_to_moment(
    resources: Resources,
    source: SqliteSource,
    moment: datetime | None,
    *,
    target: Target | None = None,
    store_first: str | None = None,
    force: bool = False,
    on_phase: Callable[[str, str], None] | None = None,
) -> SqlitePitrResult:
    """Rebuild ``source`` as of ``moment`` (the newest capture with None) at ``target``
    (default the source's own path, refused unless empty or ``force``)."""
    started = time.monotonic()
    if resources.catalog is None:
        raise UsageError(
            "a point-in-time restore of a SQLite source needs the catalog: it says which "
            "store holds which capture segment",
            hint="check --catalog / DRKIT_CATALOG",
        )
    windows = sqlite_store_windows(resources.catalog, resources.plan, source)
    window = check_target(windows, moment)
    if window is None:
        raise UsageError(
            f"no store holds a capture of {source.name}",
            hint="run `drkit archive PLAN` (see docs/pitr.md)",
        )
    generations = [
        name
        for name in window.base_backups
        if (begun := generation_time(name)) is not None and (moment is None or begun <= moment)
    ]
    if not generations:
        raise UsageError(f"no capture generation of {source.name} starts by {moment}")
    generation = generations[-1]
    database = SqliteDatabase(source)
    destination = target or database.default_target()
    if not force and not database.is_target_empty(destination):
        raise UsageError(
            f"{destination.location} already holds a database",
            hint="restore to another file with --to NAME=PATH, or replace it with --force",
        )
    result = SqlitePitrResult(source.name, destination.location, generation, moment, window)
    sizes: dict[tuple[str, str], int] = {}
    for row in resources.catalog.list_wal_objects(resources.plan.name, source=source.name):
        if row.valid_bytes and row.kind in ("base", "segment", "partial"):
            key = (row.store, row.name)
            sizes[key] = max(sizes.get(key, 0), row.valid_bytes)
    fetcher = CaptureFetcher(
        resources.plan.name,
        source.name,
        resources.repository.ordered_stores(store_first or window.store),
        resources.keys,
        sizes=sizes,
    )
    result.phases["locate"] = time.monotonic() - started
    with private_directory("drkit-sqlite-pitr-", plan=resources.plan.name) as folder:
        if on_phase:
            on_phase("fetch", source.name)
        fetched = time.monotonic()
        base = fetcher.fetch(f"{generation}.base")
        if base is None:
            raise IntegrityError(f"no store holds the base copy of generation {generation}")
        rebuilt = folder / "rebuilt.sqlite"
        rebuilt.write_bytes(base)
        segments = list(fetch_segments(fetcher, generation, window, moment))
        result.phases["fetch"] = time.monotonic() - fetched
        result.segments = [name for name, _ in segments]
        if on_phase:
            on_phase("replay", source.name)
        replayed = time.monotonic()
        replay = replay_into(rebuilt, iter(data for _, data in segments), moment)
        result.landed_at, result.transactions = replay.landed_at, replay.transactions
        connection = sqlite3.connect(rebuilt)
        try:
            check_integrity(connection, f"the rebuilt copy of {source.name}")
        finally:
            connection.close()
        result.phases["replay"] = time.monotonic() - replayed
        if on_phase:
            on_phase("load", destination.location)
        loaded = time.monotonic()
        with rebuilt.open("rb") as stream:
            database.restore(stream, destination, replace=True)
        result.phases["load"] = time.monotonic() - loaded
    result.stores = sorted(set(fetcher.log.served.values()))
    result.failovers = list(fetcher.log.failovers)
    result.faults = list(fetcher.log.faults)
    return result


def fetch_segments(
    fetcher: CaptureFetcher, generation: str, window: Window, moment: datetime | None
) -> Iterator[tuple[str, bytes]]:
    """The generation's segments in order, until one no store has; an error when that is
    before the last one the window counts on."""
    number = 1
    while (data := fetcher.fetch(segment_name(generation, number))) is not None:
        yield segment_name(generation, number), data
        number += 1
    expected = window.last_segment if window.base_backups[-1] == generation else None
    if expected is not None and segment_name(generation, number - 1) < expected:
        raise IntegrityError(
            f"capture segment {segment_name(generation, number)} of {generation} is missing "
            "in every store although the ledger lists it",
            hint="run `drkit status PLAN`: the archiver's reconciliation marks the gap",
        )


# --- the drill ------------------------------------------------------------------------------


def sqlite_pitr_drill(
    resources: Resources,
    source: SqliteSource,
    *,
    store: str | None = None,
    chance: random.Random | None = None,
) -> DrillResult:
    """Rebuild ``source`` at a random moment of one store's window in a scratch folder and
    check where it landed with the heartbeat."""
    result = DrillResult(resources.plan.name, None, store, datetime.now(UTC))
    result.sandbox_kinds = [ScratchDirectory.kind]
    try:
        catalog = resources.catalog
        windows = sqlite_store_windows(catalog, resources.plan, source) if catalog else []
        window = choose_window(windows, store)
        target = random_moment(window, chance or random.Random())
        result.store = window.store
        result.snapshot_id = window.base_backups[-1]
        if window.end is not None:
            result.rpo_seconds = (result.started_at - window.end).total_seconds()
        with ScratchDirectory(plan=resources.plan.name) as sandbox:
            scratch = sandbox.target_for(source)
            restored = restore_sqlite_to_moment(
                resources, source, target, target=scratch, store_first=window.store, force=True
            )
            result.snapshot_id = restored.generation
            result.phases.update(restored.phases)
            checks_started = time.monotonic()
            result.checks = [
                CheckResult("target", None, target.isoformat(), f"store {window.store}"),
                *copy_checks(source.name, restored.faults),
                *landing_checks(source, Path(scratch.location), target),
                *moment_checks(resources, source.name, sandbox.reader_target_for(source)),
            ]
            result.phases["checks"] = time.monotonic() - checks_started
        result.rto_seconds = sum(result.phases.values())
    except DrkitError as error:
        result.error = describe_failure(error)
        log.error("point-in-time drill of %s failed: %s", source.name, result.error)
    _judge(resources, result)
    return result


def landing_checks(source: SqliteSource, path: Path, target: datetime) -> list[CheckResult]:
    """Where the replay stopped, from the heartbeat rows (when the plan writes them): none
    after the target, the newest at most a heartbeat interval plus a capture interval (and a
    second) before it."""
    assert source.pitr is not None
    every = source.pitr.heartbeat_every
    if every is None:
        return [CheckResult("heartbeat", None, None, "no heartbeat configured: landing unchecked")]
    try:
        connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            rows = [str(row[0]) for row in connection.execute(f"SELECT at FROM {HEARTBEAT_TABLE}")]
        finally:
            connection.close()
    except sqlite3.Error as error:
        return [CheckResult("heartbeat", False, None, f"cannot read {HEARTBEAT_TABLE}: {error}")]
    beats = [datetime.fromisoformat(row) for row in rows]
    later = sum(beat > target for beat in beats)
    none_later = CheckResult(
        "no heartbeat after the target", later == 0, later, f"{later} rows later"
    )
    earlier = [beat for beat in beats if beat <= target]
    if not earlier:
        return [none_later, CheckResult("newest heartbeat", False, None, "no heartbeat row")]
    allowed = every + source.pitr.ship_partial_every + LANDING_SLACK
    gap = (target - max(earlier)).total_seconds()
    close = gap <= allowed.total_seconds()
    detail = f"{gap:.3f}s before the target (allowed {allowed.total_seconds():.0f}s)"
    return [none_later, CheckResult("newest heartbeat", close, round(gap, 3), detail)]
