"""Importing backup history in bulk: runs, snapshots, artifacts and copies of many backups
in one transaction with multi-row inserts, for tools that bring a fleet's history into a
catalog at once (the fleet benchmark; a migration from another tool). It records exactly
what ``start_run`` / ``record_snapshot`` / ``record_copy`` / ``finish_run`` would, and keeps
the run totals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Table, insert, text
from sqlalchemy.orm import Session

from drkit.catalog import totals
from drkit.catalog.models import ArtifactRow, Base, Copy, Run, Snapshot
from drkit.catalog.records import (
    CopyStatus,
    ManifestLike,
    RunOutcome,
    SnapshotStatus,
    check_choice,
)
from drkit.catalog.snapshots import artifact_values, stored_size


@dataclass(frozen=True)
class CopyEntry:
    store: str
    region: str | None
    status: str
    bytes: int = 0


@dataclass(frozen=True)
class BackupEntry:
    """One finished backup: its run, the snapshot its manifest describes, and its copies."""

    manifest: ManifestLike
    started_at: datetime
    finished_at: datetime
    outcome: str
    status: str
    copies: tuple[CopyEntry, ...]
    host: str
    pid: int
    manifest_sha256: str | None = None


_ADD_MANY = text(
    "INSERT INTO run_totals (plan, kind, outcome, le, runs, seconds, bytes) "
    "VALUES (:plan, :kind, :outcome, :le, :runs, :seconds, :bytes) "
    "ON CONFLICT (plan, kind, outcome, le) DO UPDATE SET runs = run_totals.runs + excluded.runs, "
    "seconds = run_totals.seconds + excluded.seconds, bytes = run_totals.bytes + excluded.bytes"
)


def import_backups(session: Session, entries: Sequence[BackupEntry]) -> list[int]:
    """Record ``entries``; return their run ids in order."""
    for entry in entries:
        check_choice(RunOutcome, entry.outcome, "run outcome")
        check_choice(SnapshotStatus, entry.status, "snapshot status")
        for copy in entry.copies:
            check_choice(CopyStatus, copy.status, "copy status")
    if not entries:
        return []
    # Core inserts of many rows at once: the ORM's unit of work would cost more than the
    # database does here
    connection = session.connection()
    runs = table(Run)
    run_ids = list(
        connection.execute(
            insert(runs).returning(runs.c.id, sort_by_parameter_order=True),
            [_run_row(entry) for entry in entries],
        ).scalars()
    )
    connection.execute(
        insert(table(Snapshot)),
        [_snapshot_row(e, run_id) for e, run_id in zip(entries, run_ids, strict=True)],
    )
    connection.execute(
        insert(table(ArtifactRow)),
        [
            {"snapshot_id": e.manifest.snapshot_id, **artifact_values(artifact)}
            for e in entries
            for artifact in e.manifest.artifacts
        ],
    )
    copies = [
        {
            "snapshot_id": e.manifest.snapshot_id,
            "store": c.store,
            "region": c.region,
            "status": c.status,
            "error": None,
            "bytes": c.bytes,
            "manifest_sha256": e.manifest_sha256,
        }
        for e in entries
        for c in e.copies
    ]
    if copies:
        connection.execute(insert(table(Copy)), copies)
    _add_totals(connection, entries)
    return run_ids


def table(model: type[Base]) -> Table:
    found = model.__table__
    assert isinstance(found, Table)
    return found


def _run_row(entry: BackupEntry) -> dict[str, object]:
    return {
        "plan": entry.manifest.plan,
        "kind": "backup",
        "started_at": entry.started_at,
        "finished_at": entry.finished_at,
        "outcome": entry.outcome,
        "error": None,
        "summary": {"stored_bytes": _stored_bytes(entry)},
        "host": entry.host,
        "pid": entry.pid,
    }


def _stored_bytes(entry: BackupEntry) -> int:
    return sum(copy.bytes for copy in entry.copies if copy.status == "complete")


def _snapshot_row(entry: BackupEntry, run_id: int) -> dict[str, object]:
    manifest = entry.manifest
    complete = [copy for copy in entry.copies if copy.status == "complete"]
    return {
        "good_copies": len(complete),
        "good_regions": len({copy.region or "" for copy in complete}),
        "id": manifest.snapshot_id,
        "plan": manifest.plan,
        "taken_at": manifest.taken_at,
        "finished_at": manifest.finished_at,
        "status": entry.status,
        "run_id": run_id,
        "manifest_sha256": entry.manifest_sha256,
        "size": stored_size(manifest),
        "plaintext_size": sum(a.plaintext_size for a in manifest.artifacts),
        "sources": list(manifest.sources),
    }


def _add_totals(connection: Connection, entries: Sequence[BackupEntry]) -> None:
    counted: dict[tuple[str, str, float], list[float]] = {}
    for entry in entries:
        seconds = max(0.0, (entry.finished_at - entry.started_at).total_seconds())
        key = (entry.manifest.plan, entry.outcome, totals.bucket_of(seconds))
        total = counted.setdefault(key, [0, 0.0, 0])
        total[0] += 1
        total[1] += seconds
        total[2] += _stored_bytes(entry)
    connection.execute(
        _ADD_MANY,
        [
            {
                "plan": plan,
                "kind": "backup",
                "outcome": outcome,
                "le": le,
                "runs": int(runs),
                "seconds": seconds,
                "bytes": int(size),
            }
            for (plan, outcome, le), (runs, seconds, size) in counted.items()
        ],
    )
