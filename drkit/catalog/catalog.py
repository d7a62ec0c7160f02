"""The Catalog: drkit's record of runs, snapshots, store copies, drills and plan locks.

Every method is one transaction and hands back frozen records. The catalog is a convenience
and an audit trail, not the source of truth: stores hold self-describing manifests, and
``rebuild`` recreates the catalog from them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from drkit.catalog import (
    drills,
    evidence,
    fleet,
    history,
    locks,
    periods,
    runs,
    snapshots,
    totals,
    wal,
)
from drkit.catalog.database import Database, create_catalog_engine, one_line, resolve_url
from drkit.catalog.records import (
    CopyInput,
    DrillInput,
    DrillRecord,
    LockInfo,
    ManifestLike,
    RunRecord,
    SnapshotRecord,
)
from drkit.catalog.revisions import read_current_revision, upgrade_to_head
from drkit.catalog.wal import WalRecord
from drkit.errors import DrkitError, LockHeldError
from drkit.leases.processes import is_run_owner_gone
from drkit.outcome import Outcome

Clock = Callable[[], datetime]
#: how often a command waiting for a plan's lock (--wait-for-lock) tries again
LOCK_RETRY_SECONDS = 1.0


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

    def interrupt_orphaned_runs(
        self, plans: Collection[str] | None = None, *, dry_run: bool = False
    ) -> list[RunRecord]:
        """Mark ``interrupted`` the ``running`` runs (of ``plans``, or all) whose process on
        this host has died; return them (only list them on a ``dry_run``)."""
        with self._database.reading() as session:  # most often there are none: no write lock
            found = runs.interrupt_orphaned_runs(
                session, plans, is_run_owner_gone, self._clock(), dry_run=True
            )
        if dry_run or not found:
            return found
        with self._database.transaction() as session:
            return runs.interrupt_orphaned_runs(
                session, plans, is_run_owner_gone, self._clock(), dry_run=False
            )

    def list_runs(
        self,
        plan: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        *,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first."""
        with self._database.reading() as session:
            return runs.list_runs(session, plan, kind, since, limit)

    def last_run(self, plan: str, kind: str) -> RunRecord | None:
        found = self.list_runs(plan, kind, limit=1)
        return found[0] if found else None

    @contextmanager
    def track_run(self, plan: str, kind: str) -> Iterator[RunTracker]:
        """Record a run around a block: it ends with ``tracker.outcome`` (default ``ok``), or
        ``interrupted`` (Ctrl-C, SIGTERM) or ``failed`` with the error's first
        line when the block raises. The run is closed on every exit path; a process killed
        outright leaves it ``running`` until a later command finds its owner dead."""
        tracker = RunTracker(self.start_run(plan, kind))
        try:
            yield tracker
        except BaseException as error:
            interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
            message = str(error) if isinstance(error, DrkitError) else repr(error)
            self.finish_run(
                tracker.run_id(),
                Outcome.INTERRUPTED if interrupted else Outcome.FAILED,
                error=one_line(message or type(error).__name__),
                summary=tracker.summary,
            )
            raise
        self.finish_run(
            tracker.run_id(), tracker.outcome, error=tracker.error, summary=tracker.summary
        )

    # --- evidence ------------------------------------------------------------------------

    def append_evidence(self, plan: str, seal: evidence.Sealer) -> evidence.EvidenceHead:
        """Append the record ``seal(seq, prev_hash, time)`` makes to the plan's evidence log,
        at the next position (never a fork: a lost race signs again on the new head)."""
        return evidence.append(self._database, plan, seal, self._clock)

    def import_evidence(self, plan: str, records: Sequence[tuple[int, str, datetime, str]]) -> bool:
        """Adopt a plan's log found in a store into a catalog that has none of its records."""
        return evidence.import_log(self._database, plan, records)

    def read_evidence(self, plan: str) -> list[str]:
        """The plan's evidence log, one record line each, oldest first."""
        return evidence.read_log(self._database, plan)

    def evidence_heads(self, plans: Sequence[str]) -> dict[str, evidence.EvidenceHead]:
        """The newest evidence record of each plan that has one."""
        return evidence.read_heads(self._database, plans)

    # --- snapshots and copies ------------------------------------------------------------

    def record_snapshot(
        self,
        manifest: ManifestLike,
        *,
        status: str,
        run_id: int | None = None,
        manifest_sha256: str | None = None,
    ) -> None:
        """Insert or update a snapshot and its artifacts from its manifest; ``manifest_sha256``
        is the hash of the manifest's bytes as the stores hold them."""
        with self._database.transaction() as session:
            snapshots.record_snapshot(session, manifest, status, run_id, manifest_sha256)

    def record_backup(
        self,
        manifest: ManifestLike,
        *,
        status: str,
        run_id: int | None,
        manifest_sha256: str | None,
        copies: Sequence[CopyInput],
    ) -> None:
        """A backup's snapshot and its copy in each store, in one transaction: one commit
        (and its fsyncs) where recording them one by one took one per store more."""
        with self._database.transaction() as session:
            snapshots.record_snapshot(session, manifest, status, run_id, manifest_sha256)
            for copy in copies:
                snapshots.record_copy(
                    session,
                    manifest.snapshot_id,
                    copy.store,
                    copy.region,
                    copy.status,
                    error=copy.error,
                    size=copy.bytes,
                    manifest_sha256=copy.manifest_sha256,
                )

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
        with self._database.reading() as session:
            return snapshots.list_snapshots(session, plan, since, status)

    def get_snapshot(self, snapshot_id: str) -> SnapshotRecord | None:
        with self._database.reading() as session:
            return snapshots.get_snapshot(session, snapshot_id)

    def delete_snapshot(self, snapshot_id: str) -> bool:
        """Forget a snapshot with its copies and artifacts; False when it was unknown."""
        with self._database.transaction() as session:
            return snapshots.delete_snapshot(session, snapshot_id)

    def rebuild(
        self, plan: str, manifests: Sequence[tuple[str, str, ManifestLike, str]]
    ) -> list[str]:
        """Record (store, region, manifest, manifest_sha256) as read from stores: snapshots
        complete, each with a complete copy in its store. Idempotent; returns the snapshot ids
        that were new to the catalog."""
        with self._database.transaction() as session:
            return snapshots.rebuild(session, plan, manifests)

    def plan_states(
        self, policies: Sequence[fleet.PlanPolicy], jobs: Sequence[str] = fleet.JOBS
    ) -> dict[str, fleet.PlanState]:
        """Each plan's newest runs of ``jobs``, newest snapshot meeting its copy policy, newest
        complete copy per store it names and newest drills, in a few queries for all the
        plans together; the time taken does not grow with the plans' history."""
        with self._database.reading() as session:
            return fleet.read_plan_states(session, policies, jobs)

    def run_totals(self, plans: Sequence[str]) -> dict[tuple[str, str, str], totals.JobTotals]:
        """(plan, job, outcome) -> finished runs counted with their seconds, bytes and
        duration buckets, kept as runs finish (no history is read)."""
        with self._database.reading() as session:
            return totals.read_totals(session, plans)

    def period_facts(
        self, policies: Sequence[fleet.PlanPolicy], since: datetime, until: datetime
    ) -> dict[str, periods.PeriodFacts]:
        """What happened to each plan in [since, until): runs counted by job and outcome, gaps
        between policy-meeting snapshots, copies per region, keys, drills, the newest
        snapshots as evidence; totals from a fixed number of queries for all the plans."""
        with self._database.reading() as session:
            return periods.read_period_facts(session, policies, since, until)

    def import_backups(self, entries: Sequence[history.BackupEntry]) -> list[int]:
        """Record many finished backups (run, snapshot, artifacts, copies) in one transaction;
        return their run ids. For bringing a fleet's history in at once."""
        with self._database.transaction() as session:
            return history.import_backups(session, entries)

    # --- drills --------------------------------------------------------------------------

    def record_drill(self, drill: DrillInput) -> int:
        """Record a finished drill (a DrillRecord's id is ignored); return its new id."""
        with self._database.transaction() as session:
            return drills.record_drill(session, drill)

    def list_drills(
        self, plan: str, *, since: datetime | None = None, outcome: str | None = None
    ) -> list[DrillRecord]:
        """The plan's drills, newest first."""
        with self._database.reading() as session:
            return drills.list_drills(session, plan, since, outcome, None)

    def last_drill(self, plan: str, *, outcome: str | None = None) -> DrillRecord | None:
        """The newest drill, or the newest with ``outcome`` (e.g. ``ok``)."""
        with self._database.reading() as session:
            found = drills.list_drills(session, plan, None, outcome, 1)
        return found[0] if found else None

    def _acquire_waiting(
        self, plan: str, owner: str, lease_seconds: float, wait_seconds: float
    ) -> LockInfo:
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while True:
            try:
                return self.acquire_lock(plan, owner, lease_seconds)
            except LockHeldError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                time.sleep(min(LOCK_RETRY_SECONDS, remaining))

    # --- the WAL continuity ledger ----------------------------------------------------------

    def record_wal_objects(self, records: Sequence[WalRecord]) -> None:
        """Record WAL files now durable in their stores (one transaction for all)."""
        with self._database.transaction() as session:
            for record in records:
                wal.record_wal_object(session, record)

    def forget_wal_objects(
        self, plan: str, source: str, store: str, kind: str, names: list[str]
    ) -> int:
        """Forget WAL files a store no longer holds; how many rows went."""
        with self._database.transaction() as session:
            return wal.forget_wal_objects(session, plan, source, store, kind, names)

    def list_wal_objects(
        self, plan: str, *, source: str | None = None, store: str | None = None
    ) -> list[WalRecord]:
        """The ledger's rows for a plan (optionally one source or store)."""
        with self._database.reading() as session:
            return wal.list_wal_objects(session, plan, source, store)

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
        self,
        plan: str,
        lease_seconds: float = 300,
        *,
        owner: str | None = None,
        wait_seconds: float = 0,
    ) -> Iterator[locks.LockLease]:
        """Hold the plan's lock for a block, renewed by a background thread, released after.
        With ``wait_seconds``, a lock another runner holds is tried again until then."""
        owner = owner or locks.make_lock_owner()
        info = self._acquire_waiting(plan, owner, lease_seconds, wait_seconds)
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
    """The run a ``track_run`` block records; set ``outcome``, ``error`` and ``summary``.
    ``id`` is None when there is no catalog to record in (``RunTracker.untracked()``)."""

    def __init__(self, run_id: int | None):
        self.id = run_id
        self.outcome: Outcome = Outcome.OK
        self.error: str | None = None
        self.summary: dict[str, Any] | None = None

    @classmethod
    def untracked(cls) -> RunTracker:
        return cls(None)

    def run_id(self) -> int:
        assert self.id is not None, "an untracked run has no catalog id"
        return self.id
