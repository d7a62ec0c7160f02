"""`drkit prune`: delete the snapshots a plan's retention policy no longer keeps, store by store.

Per store, the policy is the store's own ``retention`` or else the plan's; the decision is
``drkit.retention.select_kept`` over the snapshots committed in that store. Rules on top:
- never deleted, in any store: the newest snapshot that meets the copy policy (per the catalog,
  and per what the stores hold) and the snapshot of the newest passed drill;
- a snapshot is deleted manifest first, then its artifacts: the reverse of the commit protocol,
  so an interrupted prune leaves leftovers without a manifest, never a manifest pointing at
  deleted objects; its copy is marked deleted in the catalog once its manifest is gone;
- on an S3 bucket with Object Lock, a snapshot whose objects are still under retention is
  skipped and reported as locked (a delete there would only hide the objects behind delete
  markers while the bytes stay, billed, until the lock expires). Once it has expired, the
  delete hides the objects behind delete markers too: Object Lock buckets are versioned, and a
  lifecycle rule expiring noncurrent versions is what finally frees the space;
- archived WAL of ``pitr:`` sources older than the oldest kept base backup's start is deleted
  (``wal_retention``), never while a restore or drill runs;
- a restic store is compacted (``restic prune``) after its deletions, so space comes back;
- the first store failure stops that store's prune (the others go on) and makes the run
  degraded; every store failing makes it failed.
- objects of snapshots that never committed (a backup killed on a host whose leases are gone)
  are removed once older than any backup runs (``drkit.repository.leftovers``);
- only snapshots the catalog recorded, or whose manifest authenticates, count: a forged or
  damaged snapshot folder in a store never pushes a real snapshot out of the policy (it is
  reported and left alone).
A dry run works on every store through ``DryRunStore``: everything is read (lock states
included) and nothing changes, not even the catalog.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drkit.actions.resources import Resources
from drkit.actions.tracking import tracked_run
from drkit.actions.wal_retention import prune_wal
from drkit.errors import DrkitError, ObjectNotFound, StoreError, describe_failure
from drkit.outcome import Outcome
from drkit.plan.schema import RetentionPolicy
from drkit.report.status import meets_copy_policy
from drkit.repository import (
    Repository,
    list_store_snapshots,
    remove_stale_uncommitted,
    snapshot_time,
)
from drkit.retention import describe_policy, select_kept
from drkit.stores.base import Store
from drkit.stores.dryrun import DryRunStore

log = logging.getLogger(__name__)
NEWEST_COMPLETE = "newest complete"
NEWEST_DRILLED = "newest drill-verified"


@dataclass
class StorePrune:
    """What prune decided and did in one store."""

    store: str
    policy: RetentionPolicy
    kept: dict[str, list[str]] = field(default_factory=dict)  # id -> why it is kept
    deleted: list[str] = field(default_factory=list)  # oldest first; "would delete" in a dry run
    locked: dict[str, datetime] = field(default_factory=dict)  # due for deletion, locked until
    #: listed but neither recorded by the catalog nor proven by its manifest: left alone
    unproven: dict[str, str] = field(default_factory=dict)
    #: snapshots that never committed, older than any backup runs: their objects removed
    leftovers: list[str] = field(default_factory=list)
    #: archived WAL files no kept base backup needs (pitr sources), deleted
    wal_deleted: list[str] = field(default_factory=list)
    error: str | None = None
    compacted: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, object]:
        return {
            "store": self.store,
            "policy": describe_policy(self.policy),
            "ok": self.ok,
            "error": self.error,
            "kept": [{"snapshot_id": key, "reasons": why} for key, why in self.kept.items()],
            "deleted": self.deleted,
            "locked": [
                {"snapshot_id": key, "locked_until": until.isoformat()}
                for key, until in self.locked.items()
            ],
            "unproven": self.unproven,
            "leftovers": self.leftovers,
            "wal_deleted": len(self.wal_deleted),
            "compacted": self.compacted,
        }


@dataclass
class PruneResult:
    plan: str
    dry_run: bool
    protected: dict[str, str]  # id -> why no policy may delete it
    stores: list[StorePrune]
    run_id: int | None = None

    @property
    def outcome(self) -> Outcome:
        """``ok``; ``degraded`` when some store could not be pruned; ``failed`` when none."""
        failed = [store for store in self.stores if not store.ok]
        if not failed:
            return Outcome.OK
        return Outcome.FAILED if len(failed) == len(self.stores) else Outcome.DEGRADED

    @property
    def error(self) -> str | None:
        problems = [f"{store.store}: {store.error}" for store in self.stores if not store.ok]
        return "; ".join(problems) or None

    def to_json(self) -> dict[str, object]:
        return {
            "plan": self.plan,
            "dry_run": self.dry_run,
            "outcome": self.outcome.value,
            "error": self.error,
            "protected": self.protected,
            "stores": [store.to_json() for store in self.stores],
        }


def prune(
    resources: Resources, *, dry_run: bool = False, now: datetime | None = None
) -> PruneResult:
    """Apply retention to every store of the plan; a real run is recorded in the catalog.

    ``now`` (default: the current time) decides which Object Lock retentions have expired.
    Store failures are reported in the result, never raised."""
    if dry_run:  # a dry run changes nothing, not even the run history
        repository = resources.repository
        stores: list[Store] = [DryRunStore(store) for store in repository.stores]
        preview = Repository(repository.plan, stores, repository.keys)
        return run_prune(resources, preview, dry_run=True, now=now)
    with tracked_run(resources, "prune") as tracker:
        result = run_prune(resources, resources.repository, dry_run=False, now=now)
        result.run_id = tracker.id
        tracker.outcome, tracker.error, tracker.summary = (
            result.outcome,
            result.error,
            result.to_json(),
        )
    return result


def run_prune(
    resources: Resources, repository: Repository, *, dry_run: bool, now: datetime | None
) -> PruneResult:
    """Decide and delete, store by store, without recording a run."""
    listings, unreachable = list_store_snapshots(repository, [s.name for s in repository.stores])
    results = {
        name: StorePrune(name, store_policy(resources, name), error=why)
        for name, why in unreachable.items()
    }
    trusted = {
        name: trusted_ids(resources, repository, name, ids, results)
        for name, ids in listings.items()
    }
    protected = protected_snapshots(resources, trusted)
    moment = now or datetime.now(UTC)
    for store in repository.stores:
        if store.name in trusted:
            results[store.name] = prune_store(
                resources,
                repository,
                store,
                trusted[store.name],
                protected,
                results.get(store.name),
                record=not dry_run,
                now=moment,
            )
    return PruneResult(
        resources.plan.name, dry_run, protected, [results[s.name] for s in repository.stores]
    )


def trusted_ids(
    resources: Resources,
    repository: Repository,
    store_name: str,
    snapshot_ids: list[str],
    results: dict[str, StorePrune],
) -> list[str]:
    """The listed ids that count: recorded complete in this store by the catalog, or whose
    manifest authenticates there. The others are noted as unproven and left alone."""
    known: set[str] = set()
    if resources.catalog is not None:
        for record in resources.catalog.list_snapshots(resources.plan.name):
            if store_name in record.complete_stores():
                known.add(record.id)
    outcome = results.setdefault(
        store_name, StorePrune(store_name, store_policy(resources, store_name))
    )
    trusted = []
    for snapshot_id in snapshot_ids:
        if snapshot_id not in known:
            try:
                repository.open_manifest(repository.store(store_name), snapshot_id)
            except DrkitError as error:
                outcome.unproven[snapshot_id] = describe_failure(error)
                log.warning(
                    "store %s: %s is not proven, left alone: %s",
                    store_name,
                    snapshot_id,
                    outcome.unproven[snapshot_id],
                )
                continue
        trusted.append(snapshot_id)
    return trusted


def store_policy(resources: Resources, store_name: str) -> RetentionPolicy:
    """The store's own retention override, else the plan's."""
    return resources.plan.store(store_name).retention or resources.plan.retention


def protected_snapshots(resources: Resources, listings: Mapping[str, list[str]]) -> dict[str, str]:
    """Snapshots no policy may delete: the newest complete one (as the catalog records it and
    as the stores hold it; both, when they disagree) and the newest drill-verified one."""
    protected: dict[str, str] = {}
    for snapshot_id in (newest_complete_in_stores(resources, listings), *catalog_newest(resources)):
        if snapshot_id is not None:
            protected.setdefault(snapshot_id, NEWEST_COMPLETE)
    catalog = resources.catalog
    passed = catalog.last_drill(resources.plan.name, outcome=Outcome.OK) if catalog else None
    if passed is not None:
        why = protected.get(passed.snapshot_id)
        protected[passed.snapshot_id] = f"{why}, {NEWEST_DRILLED}" if why else NEWEST_DRILLED
    return protected


def catalog_newest(resources: Resources) -> Iterator[str]:
    """The newest snapshot meeting the copy policy per the catalog (none without one)."""
    if resources.catalog is None:
        return
    for record in resources.catalog.list_snapshots(resources.plan.name):  # newest first
        if meets_copy_policy(resources.plan, record):
            yield record.id
            return


def newest_complete_in_stores(
    resources: Resources, listings: Mapping[str, list[str]]
) -> str | None:
    """The newest snapshot whose manifest is in enough stores and regions (of those listed)."""
    copies = resources.plan.copies
    regions = {store.name: store.region for store in resources.stores}
    holders: dict[str, list[str]] = {}
    for store_name, snapshot_ids in listings.items():
        for snapshot_id in snapshot_ids:
            holders.setdefault(snapshot_id, []).append(store_name)
    complete = [
        snapshot_id
        for snapshot_id, stores in holders.items()
        if len(stores) >= copies.min_stores
        and len({regions[name] for name in stores}) >= copies.min_regions
    ]
    return max(complete, default=None)  # ids sort by time


def prune_store(
    resources: Resources,
    repository: Repository,
    store: Store,
    snapshot_ids: list[str],
    protected: Mapping[str, str],
    outcome: StorePrune | None,
    *,
    record: bool,
    now: datetime,
) -> StorePrune:
    """Decide for one store and delete what the decision lets go (in a dry run, ``store`` is a
    DryRunStore, so nothing really goes); ``record`` notes deletions in the catalog."""
    policy = store_policy(resources, store.name)
    timed = [(i, t) for i in snapshot_ids if (t := snapshot_time(i)) is not None]
    decision = select_kept(timed, policy, protected=protected)
    outcome = outcome or StorePrune(store.name, policy)
    outcome.kept = {key: list(why) for key, why in decision.kept.items()}

    def uncommitted(snapshot_id: str) -> None:
        """The manifest is gone: the copy is deleted, whatever happens to its objects."""
        outcome.deleted.append(snapshot_id)
        if record and resources.catalog is not None:
            resources.catalog.mark_copy_deleted(snapshot_id, store.name)

    try:
        for snapshot_id in reversed(decision.deleted):  # oldest first
            until = locked_until(repository, store, snapshot_id, now)
            if until is not None:
                outcome.locked[snapshot_id] = until
                log.info("store %s: %s is locked until %s", store.name, snapshot_id, until)
                continue
            repository.delete_snapshot(
                store, snapshot_id, functools.partial(uncommitted, snapshot_id)
            )
            log.info("store %s: deleted snapshot %s", store.name, snapshot_id)
        outcome.leftovers = remove_stale_uncommitted(
            repository, store.name, now=now, dry_run=not record
        )
        outcome.wal_deleted = prune_wal(resources, store, list(outcome.kept), record=record)
        compactor = store.abilities().compactor
        if (outcome.deleted or outcome.leftovers) and compactor is not None:
            compactor.compact()
            outcome.compacted = True
    except StoreError as error:
        outcome.error = describe_failure(error)
        log.error("store %s: prune stopped: %s", store.name, outcome.error)
    return outcome


def locked_until(
    repository: Repository, store: Store, snapshot_id: str, now: datetime
) -> datetime | None:
    """The latest Object Lock retain-until among a snapshot's objects still under retention
    at ``now``, or None (nothing locked, or a store without Object Lock)."""
    reader = store.abilities().lock_status
    if reader is None:
        return None
    latest: datetime | None = None
    for key in repository.list_snapshot_objects(store, snapshot_id):
        with contextlib.suppress(ObjectNotFound):  # gone meanwhile: nothing to hold back
            mode, until = reader.lock_status(key)
            if mode is not None and until is not None and until > now:
                latest = until if latest is None else max(latest, until)
    return latest
