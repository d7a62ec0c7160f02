"""WAL retention for `drkit prune`: in each store, the archived WAL older than what the oldest
base backup prune kept there needs is deleted, and nothing else. The same for a MariaDB
source's archived binlog: files before the one the oldest kept dump starts in. A SQLite
source's capture is not tied to snapshots: its generations before the one holding the moment
the oldest kept snapshot was taken are deleted (the window reaches back as far as the kept
snapshots do).

Never deleted: a segment at or after the start of any kept base backup (every moment of a kept
backup's window stays restorable), timeline history files (tiny, and needed to follow any
timeline), anything at all while a restore or drill of the plan is running, or when the
catalog cannot say where the kept base backups start.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from drkit.actions.resources import Resources
from drkit.archive.binlog_window import PROBLEM_KIND
from drkit.archive.ledger import binlog_sources, pitr_sources, sqlite_sources
from drkit.archive.objects import WalObject, is_wal_store, objects_from_keys, wal_prefix
from drkit.archive.sqlite_names import generation_time
from drkit.archive.sqlite_names import parse_segment_name as parse_capture_segment
from drkit.archive.walnames import parse_lsn, parse_segment_name, segment_of
from drkit.sources.basebackup import BASE_BACKUP_FORMAT
from drkit.sources.binlog_stream import BinlogFile, parse_binlog_name
from drkit.stores.base import Store

log = logging.getLogger(__name__)
READERS = ("restore", "drill")
#: whether an archived object is older than every kept backup needs
Obsolete = Callable[[WalObject], bool]


def is_wal_being_read(resources: Resources) -> bool:
    """True while a restore or drill of the plan runs (it may be fetching old WAL)."""
    assert resources.catalog is not None
    return any(
        run.outcome == "running"
        for kind in READERS
        for run in resources.catalog.list_runs(resources.plan.name, kind, limit=5)
    )


def first_needed_segment(resources: Resources, source: str, kept: list[str]) -> int | None:
    """The oldest segment number a kept base backup of ``source`` starts in; None when no kept
    snapshot holds one (then nothing is deleted)."""
    assert resources.catalog is not None
    starts = []
    for snapshot_id in kept:
        record = resources.catalog.get_snapshot(snapshot_id)
        for artifact in record.artifacts if record is not None else ():
            info = artifact.fingerprint.get("base_backup")
            if artifact.source == source and artifact.format == BASE_BACKUP_FORMAT and info:
                starts.append(segment_of(parse_lsn(info["start_lsn"])))
    return min(starts) if starts else None


def first_needed_binlog(resources: Resources, source: str, kept: list[str]) -> BinlogFile | None:
    """The oldest binlog file a kept dump of ``source`` starts in; None when no kept snapshot
    names one (then nothing is deleted)."""
    assert resources.catalog is not None
    starts = []
    for snapshot_id in kept:
        record = resources.catalog.get_snapshot(snapshot_id)
        for artifact in record.artifacts if record is not None else ():
            info = artifact.fingerprint.get("binlog") if artifact.source == source else None
            if info and (start := parse_binlog_name(str(info.get("file", "")))) is not None:
                starts.append(start)
    return min(starts) if starts else None


def obsolete_rules(resources: Resources, kept: list[str]) -> list[tuple[str, Obsolete]]:
    """Per archiving source, what of its archive no kept backup needs."""
    rules: list[tuple[str, Obsolete]] = []
    for source in pitr_sources(resources.plan):
        first = first_needed_segment(resources, source.name, kept)
        if first is not None:
            rules.append((source.name, functools.partial(_is_before_segment, first)))
    for binlog_source in binlog_sources(resources.plan):
        start = first_needed_binlog(resources, binlog_source.name, kept)
        if start is not None:
            rules.append((binlog_source.name, functools.partial(_is_before_binlog, start)))
    for sqlite_source in sqlite_sources(resources.plan):
        generation = first_needed_generation(resources, sqlite_source.name, kept)
        if generation is not None:
            rules.append((sqlite_source.name, functools.partial(_is_before_generation, generation)))
    return rules


def first_needed_generation(resources: Resources, source: str, kept: list[str]) -> str | None:
    """The generation holding the moment the oldest kept snapshot was taken (the newest that
    started by then, else the oldest); None when no snapshot is kept or none is known."""
    assert resources.catalog is not None
    taken = [
        record.taken_at
        for snapshot_id in kept
        if (record := resources.catalog.get_snapshot(snapshot_id)) is not None
    ]
    rows = resources.catalog.list_wal_objects(resources.plan.name, source=source)
    generations = sorted({row.name for row in rows if row.kind == "base"})
    if not taken or not generations:
        return None
    oldest = min(taken)
    started = [name for name in generations if (begun := generation_time(name)) and begun <= oldest]
    return started[-1] if started else generations[0]


def _is_before_generation(first: str, item: WalObject) -> bool:
    if item.kind == "base":
        return item.name < first
    found = parse_capture_segment(item.name)
    return found is not None and found[0] < first


def _is_before_segment(first: int, item: WalObject) -> bool:
    return item.kind != "history" and parse_segment_name(item.name).number < first


def _is_before_binlog(start: BinlogFile, item: WalObject) -> bool:
    found = parse_binlog_name(item.name)
    return found is not None and found.base == start.base and found.number < start.number


def prune_wal(resources: Resources, store: Store, kept: list[str], *, record: bool) -> list[str]:
    """Delete the WAL (binlog) no kept backup needs from ``store``; the names deleted (or, in
    a dry run, that would be)."""
    if resources.catalog is None or not is_wal_store(store):
        return []
    rules = obsolete_rules(resources, kept)
    if not rules:
        return []
    if is_wal_being_read(resources):
        log.info("store %s: WAL kept: a restore or drill of the plan is running", store.name)
        return []
    plan = resources.plan.name
    deleted = []
    for source, is_obsolete in rules:
        found = objects_from_keys(plan, source, store.list(wal_prefix(plan, source)))
        old = [item for item in found if is_obsolete(item)]
        for item in old:
            store.delete(WalObject(item.kind, item.name).key(plan, source))
        if record:
            for kind in ("segment", "partial", "base"):
                names = [item.name for item in old if item.kind == kind]
                if names:
                    resources.catalog.forget_wal_objects(plan, source, store.name, kind, names)
        deleted += [item.name for item in old]
        if old:
            log.info("store %s: deleted %d WAL files of %s", store.name, len(old), source)
    if record:
        forget_pruned_gaps(resources, store, kept)
    return deleted


def forget_pruned_gaps(resources: Resources, store: Store, kept: list[str]) -> None:
    """A SQLite gap before the first generation kept is no longer in any window: its problem
    row goes (``gap-<the generation that started after it>``)."""
    assert resources.catalog is not None
    plan = resources.plan.name
    for source in sqlite_sources(resources.plan):
        first = first_needed_generation(resources, source.name, kept)
        if first is None:
            continue
        rows = resources.catalog.list_wal_objects(plan, source=source.name, store=store.name)
        names = [
            row.name
            for row in rows
            if row.kind == PROBLEM_KIND and row.name.startswith("gap-") and row.name[4:] <= first
        ]
        if names:
            resources.catalog.forget_wal_objects(plan, source.name, store.name, PROBLEM_KIND, names)
