"""The continuity ledger read back: the recoverable window of each store for a plan's PITR
source, from the catalog's base backups (snapshots whose artifact is a physical base backup)
complete in each store and the ledger rows of the WAL each store holds."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from drkit.archive.binlog_window import BinlogDump, compute_binlog_window
from drkit.archive.sqlite_window import compute_sqlite_window
from drkit.archive.walnames import (
    DEFAULT_SEGMENT_SIZE,
    TimelineSwitch,
    history_timeline,
    parse_history,
    parse_lsn,
    parse_segment_name,
)
from drkit.archive.window import BaseBackup, HeldWal, Window, compute_window
from drkit.catalog import Catalog
from drkit.catalog.wal import WalRecord
from drkit.plan.schema import MysqlSource, Plan, PostgresqlSource, SqliteSource
from drkit.sources.basebackup import BASE_BACKUP_FORMAT
from drkit.sources.binlog_stream import parse_binlog_name


def pitr_sources(plan: Plan) -> list[PostgresqlSource]:
    return [s for s in plan.sources if isinstance(s, PostgresqlSource) and s.pitr is not None]


def base_backups_by_store(catalog: Catalog, plan: str, source: str) -> dict[str, list[BaseBackup]]:
    """Each store's complete base backups of ``source``."""
    found: dict[str, list[BaseBackup]] = defaultdict(list)
    for snapshot in catalog.list_snapshots(plan, status="complete"):
        for artifact in snapshot.artifacts:
            info = artifact.fingerprint.get("base_backup")
            if artifact.source != source or artifact.format != BASE_BACKUP_FORMAT or not info:
                continue
            backup = BaseBackup(
                snapshot.id,
                int(info["timeline"]),
                parse_lsn(info["start_lsn"]),
                parse_lsn(info["end_lsn"]),
                datetime.fromisoformat(info["end_time"]),
            )
            for store in snapshot.complete_stores():
                found[store].append(backup)
    return found


def held_wal(
    records: list[WalRecord],
) -> tuple[list[HeldWal], dict[int, list[TimelineSwitch]], int]:
    """The ledger rows of one store as segments, timeline histories and the segment size."""
    sizes = [r.valid_bytes for r in records if r.kind == "segment" and r.valid_bytes]
    segment_size = max(sizes) if sizes else DEFAULT_SEGMENT_SIZE
    held, histories = [], {}
    for record in records:
        if record.kind == "history":
            histories[history_timeline(record.name)] = parse_history(record.detail or "")
            continue
        held.append(
            HeldWal(
                parse_segment_name(record.name, segment_size),
                record.kind == "partial",
                record.valid_bytes or 0,
                record.covered_until,
            )
        )
    return held, histories, segment_size


def store_windows(catalog: Catalog, plan: Plan, source: PostgresqlSource) -> list[Window]:
    """The window of every store that takes WAL (restic stores do not), in plan order."""
    backups = base_backups_by_store(catalog, plan.name, source.name)
    by_store: dict[str, list[WalRecord]] = defaultdict(list)
    for record in catalog.list_wal_objects(plan.name, source=source.name):
        by_store[record.store].append(record)
    windows = []
    for store in plan.stores:
        if store.type == "restic":
            continue
        held, histories, segment_size = held_wal(by_store.get(store.name, []))
        windows.append(
            compute_window(store.name, backups.get(store.name, []), held, histories, segment_size)
        )
    return windows


def binlog_sources(plan: Plan) -> list[MysqlSource]:
    return [s for s in plan.sources if isinstance(s, MysqlSource) and s.pitr is not None]


def binlog_dumps_by_store(catalog: Catalog, plan: str, source: str) -> dict[str, list[BinlogDump]]:
    """Each store's complete dumps of ``source`` that name their binlog position."""
    found: dict[str, list[BinlogDump]] = defaultdict(list)
    for snapshot in catalog.list_snapshots(plan, status="complete"):
        for artifact in snapshot.artifacts:
            info = artifact.fingerprint.get("binlog") if artifact.source == source else None
            start = parse_binlog_name(str(info.get("file", ""))) if info else None
            if not info or start is None:
                continue
            dump = BinlogDump(
                snapshot.id,
                start,
                int(info["position"]),
                datetime.fromisoformat(info["time"]),
            )
            for store in snapshot.complete_stores():
                found[store].append(dump)
    return found


def binlog_store_windows(catalog: Catalog, plan: Plan, source: MysqlSource) -> list[Window]:
    """The window of every store that takes binlogs (restic stores do not), in plan order."""
    dumps = binlog_dumps_by_store(catalog, plan.name, source.name)
    by_store: dict[str, list[WalRecord]] = defaultdict(list)
    for record in catalog.list_wal_objects(plan.name, source=source.name):
        by_store[record.store].append(record)
    return [
        compute_binlog_window(store.name, dumps.get(store.name, []), by_store.get(store.name, []))
        for store in plan.stores
        if store.type != "restic"
    ]


def sqlite_sources(plan: Plan) -> list[SqliteSource]:
    return [s for s in plan.sources if isinstance(s, SqliteSource) and s.pitr is not None]


def sqlite_store_windows(catalog: Catalog, plan: Plan, source: SqliteSource) -> list[Window]:
    """The window of every store that takes the capture (restic stores do not), in plan
    order."""
    by_store: dict[str, list[WalRecord]] = defaultdict(list)
    for record in catalog.list_wal_objects(plan.name, source=source.name):
        by_store[record.store].append(record)
    return [
        compute_sqlite_window(store.name, by_store.get(store.name, []))
        for store in plan.stores
        if store.type != "restic"
    ]


ContinuousSource = PostgresqlSource | MysqlSource | SqliteSource


def continuous_sources(plan: Plan) -> list[ContinuousSource]:
    """Every source with a ``pitr:`` section, whatever its engine: PostgreSQL, MariaDB, SQLite."""
    return [*pitr_sources(plan), *binlog_sources(plan), *sqlite_sources(plan)]


def windows_of(catalog: Catalog, plan: Plan, source: ContinuousSource) -> list[Window]:
    """Each store's recoverable window for a source of any engine."""
    if isinstance(source, MysqlSource):
        return binlog_store_windows(catalog, plan, source)
    if isinstance(source, SqliteSource):
        return sqlite_store_windows(catalog, plan, source)
    return store_windows(catalog, plan, source)
