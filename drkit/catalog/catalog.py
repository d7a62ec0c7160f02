"""The Catalog: drkit's record of runs, snapshots, store copies, drills and plan locks.

Every method is one transaction and hands back frozen records. The catalog is a convenience
and an audit trail, not the source of truth: stores hold self-describing manifests, and
``rebuild`` recreates the catalog from them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from drkit.catalog import drills, locks, runs, snapshots
from drkit.catalog.database import Database, create_catalog_engine, one_line, resolve_url
from drkit.catalog.records import (
    DrillInput,
    DrillRecord,
    LockInfo,
    RunRecord,
    SnapshotRecord,
)
from drkit.catalog.revisions import read_current_revision, upgrade_to_head
from drkit.errors import DrkitError
from drkit.manifest import Manifest

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Catalog:
    """An open catalog. Use ``Catalog.open()``; close it, or use it as a context manager."""

    def __init__(self, database: Database, *, clock: Clock = utc_now, applied: list[str]):
        self._database = database
        self._clock = clock
        #: revisions the migration on open applied (empty when the schema was current)
        self.applied_on_open = applied

    @classmethod
    def open(cls, url: str | None = None, *, clock: Clock = utc_now) -> Catalog:
        """Open the catalog at ``url`` (else $DRKIT_CATALOG, else $DRKIT_HOME/catalog.db) and
        bring its schema to the newest revision. CatalogError, without passwords, when the
        database cannot be reached or migrated."""
        resolved = resolve_url(url)
        engine = create_catalog_engine(resolved)
        database = Database(engine, resolved)
        try:
            applied = upgrade_to_head(engine, database.url)
        except BaseException:
            database.close()
            raise
        return cls(database, clock=clock, applied=applied)

    @property
    def url(self) -> str:
        """The catalog's URL with any password hidden."""
        return self._database.url

    def upgrade(self) -> list[str]:
        """Apply missing schema revisions; return them in order (empty when current)."""
        return upgrade_to_head(self._database.engine, self._database.url)

    def current_revision(self) -> str | None:
        return read_current_revision(self._database.engine, self._database.url)

    def close(self) -> None:
        self._database.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- runs ----------------------------------------------------------------------------

    def start_run(self, plan: str, kind: str) -> int:
        """Record a run as ``running`` on this host and pid; return its id."""
        with self._database.transaction() as session:
            return runs.start_run(session, plan, kind, self._clock())

    def finish_run(
        self,
        run_id: int,
        outcome: str,
        *,
        error: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Close a run with its outcome; ``error`` is cut to one line, URL passwords hidden."""
        with self._database.transaction() as session:
            runs.finish_run(session, run_id, outcome, self._clock(), error=error, summary=summary)

    def list_runs(
        self,
        plan: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        *,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first."""
        with self._database.transaction() as session:
            return runs.list_runs(session, plan, kind, since, limit)

    def last_run(self, plan: str, kind: str) -> RunRecord | None:
        found = self.list_runs(plan, kind, limit=1)
        return found[0] if found else None

    @contextmanager
    def track_run(self, plan: str, kind: str) -> Iterator[RunTracker]:
        """Record a run around a block: it ends with ``tracker.outcome`` (default ``ok``), or
        ``failed``/``interrupted`` with the error's first line when the block raises."""
        tracker = RunTracker(self.start_run(plan, kind))
        try:
            yield tracker
        except (KeyboardInterrupt, SystemExit) as error:
            self.finish_run(
                tracker.id, "interrupted", error=type(error).__name__, summary=tracker.summary
            )
            raise
        except Exception as error:
            message = str(error) if isinstance(error, DrkitError) else repr(error)
            self.finish_run(tracker.id, "failed", error=one_line(message), summary=tracker.summary)
            raise
        self.finish_run(tracker.id, tracker.outcome, error=tracker.error, summary=tracker.summary)

    # --- snapshots and copies ------------------------------------------------------------

    def record_snapshot(
        self, manifest: Manifest, *, status: str, run_id: int | None = None
    ) -> None:
        """Insert or update a snapshot and its artifacts from its manifest."""
        with self._database.transaction() as session:
            snapshots.record_snapshot(session, manifest, status, run_id)

    def set_snapshot_status(self, snapshot_id: str, status: str) -> None:
        with self._database.transaction() as session:
            snapshots.set_snapshot_status(session, snapshot_id, status)

    def record_copy(
        self,
        snapshot_id: str,
        store: str,
        region: str | None,
        status: str,
        *,
        error: str | None = None,
        bytes: int = 0,  # named for the column, shadowing the builtin here only
        manifest_sha256: str | None = None,
    ) -> None:
        """Insert or update the snapshot's copy in ``store``."""
        with self._database.transaction() as session:
            snapshots.record_copy(
                session,
                snapshot_id,
                store,
                region,
                status,
                error=error,
                size=bytes,
                manifest_sha256=manifest_sha256,
            )

    def record_verification(
        self, snapshot_id: str, store: str, ok: bool, error: str | None = None
    ) -> None:
        """Note the result of verifying the copy in ``store`` now."""
        with self._database.transaction() as session:
            snapshots.record_verification(session, snapshot_id, store, ok, error, self._clock())

    def mark_copy_deleted(self, snapshot_id: str, store: str) -> bool:
        """Mark a pruned copy deleted; False when the catalog knew no such copy."""
        with self._database.transaction() as session:
            return snapshots.mark_copy_deleted(session, snapshot_id, store)

    def list_snapshots(
        self, plan: str, *, since: datetime | None = None, status: str | None = None
    ) -> list[SnapshotRecord]:
        """The plan's snapshots, newest first, each with its copies and artifacts."""
        with self._database.transaction() as session:
            return snapshots.list_snapshots(session, plan, since, status)

    def get_snapshot(self, snapshot_id: str) -> SnapshotRecord | None:
        with self._database.transaction() as session:
            return snapshots.get_snapshot(session, snapshot_id)

    def delete_snapshot(self, snapshot_id: str) -> bool:
        """Forget a snapshot with its copies and artifacts; False when it was unknown."""
        with self._database.transaction() as session:
            return snapshots.delete_snapshot(session, snapshot_id)

    def rebuild(self, plan: str, manifests: list[tuple[str, str, Manifest, str]]) -> list[str]:
        """Record (store, region, manifest, manifest_sha256) as read from stores: snapshots
        complete, each with a complete copy in its store. Idempotent; returns the snapshot ids
        that were new to the catalog."""
        with self._database.transaction() as session:
            return snapshots.rebuild(session, plan, manifests)

    # --- drills --------------------------------------------------------------------------

    def record_drill(self, drill: DrillInput) -> int:
        """Record a finished drill (a DrillRecord's id is ignored); return its new id."""
        with self._database.transaction() as session:
            return drills.record_drill(session, drill)

    def list_drills(
        self, plan: str, *, since: datetime | None = None, outcome: str | None = None
    ) -> list[DrillRecord]:
        """The plan's drills, newest first."""
        with self._database.transaction() as session:
            return drills.list_drills(session, plan, since, outcome, None)

    def last_drill(self, plan: str, *, outcome: str | None = None) -> DrillRecord | None:
        """The newest drill, or the newest with ``outcome`` (e.g. ``passed``)."""
        with self._database.transaction() as session:
            found = drills.list_drills(session, plan, None, outcome, 1)
        return found[0] if found else None

    # --- locks ---------------------------------------------------------------------------

    def acquire_lock(self, plan: str, owner: str, lease_seconds: float) -> LockInfo:
        """Take the plan's lock for ``lease_seconds``. An expired lease is taken over (the
        result's ``took_over_from`` names the old holder); a live one raises LockHeldError
        naming its holder and expiry. Re-acquiring one's own lock extends it."""
        return locks.acquire_lock(self._database, plan, owner, lease_seconds, self._clock())

    def heartbeat(self, plan: str, owner: str, lease_seconds: float) -> LockInfo:
        """Extend ``owner``'s lease to now + ``lease_seconds``; LockHeldError if it was lost."""
        return locks.heartbeat(self._database, plan, owner, lease_seconds, self._clock())

    def release_lock(self, plan: str, owner: str) -> bool:
        """Release ``owner``'s lock; False (and no change) when ``owner`` does not hold it."""
        return locks.release_lock(self._database, plan, owner)

    def read_lock(self, plan: str) -> LockInfo | None:
        """The plan's lock as recorded, live or expired, or None."""
        return locks.read_lock(self._database, plan)

    @contextmanager
    def hold_lock(
        self, plan: str, lease_seconds: float = 300, *, owner: str | None = None
    ) -> Iterator[locks.LockLease]:
        """Hold the plan's lock for a block, renewed by a background thread, released after."""
        owner = owner or locks.make_lock_owner()
        info = self.acquire_lock(plan, owner, lease_seconds)
        lease = locks.LockLease(
            info,
            renew=lambda: self.heartbeat(plan, owner, lease_seconds),
            release=lambda: self.release_lock(plan, owner),
            interval_seconds=lease_seconds / 3,
        )
        lease.start()
        try:
            yield lease
        finally:
            lease.stop()


class RunTracker:
    """The run a ``track_run`` block records; set ``outcome``, ``error`` and ``summary``."""

    def __init__(self, run_id: int):
        self.id = run_id
        self.outcome = "ok"
        self.error: str | None = None
        self.summary: dict[str, Any] | None = None
