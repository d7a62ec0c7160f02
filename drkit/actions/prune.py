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
- a restic store is compacted (``restic prune``) after its deletions, so space comes back;
- the first store failure stops that store's prune (the others go on) and makes the run
  degraded; every store failing makes it failed.
``dry_run`` reads everything (including lock states) and changes nothing, not even the catalog.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from drkit.actions.fanout import describe_failure
from drkit.actions.locate import list_store_snapshot_ids
from drkit.actions.outcome import Outcome
from drkit.actions.resources import Resources
from drkit.actions.verify import LockReporting, unwrap_store
from drkit.errors import ObjectNotFound, StoreError
from drkit.manifest import manifest_key, snapshot_prefix, snapshot_time
from drkit.plan.schema import RetentionPolicy
from drkit.report.status import meets_copy_policy
from drkit.retention import describe_policy, select_kept
from drkit.stores.base import Store

log = logging.getLogger(__name__)
NEWEST_COMPLETE = "newest complete"
NEWEST_DRILLED = "newest drill-verified"


@runtime_checkable
class CompactingStore(Protocol):
    """A store whose deletions free space only once compacted (``ResticStore.compact``)."""

    def compact(self) -> None: ...


@dataclass
class StorePrune:
    """What prune decided and did in one store."""

    store: str
    policy: RetentionPolicy
    kept: dict[str, list[str]] = field(default_factory=dict)  # id -> why it is kept
    deleted: list[str] = field(default_factory=list)  # oldest first; "would delete" in a dry run
    locked: dict[str, datetime] = field(default_factory=dict)  # due for deletion, locked until
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
    def outcome(self) -> str:
        """``ok``; ``degraded`` when some store could not be pruned; ``failed`` when none."""
        failed = [store for store in self.stores if not store.ok]
        outcome = Outcome.OK
        if failed:
            outcome = Outcome.FAILED if len(failed) == len(self.stores) else Outcome.DEGRADED
        return str(outcome.value)

    @property
    def error(self) -> str | None:
        problems = [f"{store.store}: {store.error}" for store in self.stores if not store.ok]
        return "; ".join(problems) or None

    def to_json(self) -> dict[str, object]:
        return {
            "plan": self.plan,
            "dry_run": self.dry_run,
            "outcome": self.outcome,
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
    catalog = resources.catalog
    if catalog is None or dry_run:  # a dry run changes nothing, not even the run history
        return run_prune(resources, dry_run=dry_run, now=now)
    with catalog.track_run(resources.plan.name, "prune") as tracker:
        result = run_prune(resources, dry_run=False, now=now)
        result.run_id = tracker.id
        tracker.outcome = result.outcome
        tracker.error = result.error
        tracker.summary = result.to_json()
    return result


def run_prune(resources: Resources, *, dry_run: bool, now: datetime | None) -> PruneResult:
    """Decide and delete, store by store, without recording a run."""
    plan = resources.plan.name
    listings: dict[str, list[str]] = {}
    results: dict[str, StorePrune] = {}
    for store in resources.stores:
        try:
            listings[store.name] = list_store_snapshot_ids(store, plan)
        except StoreError as error:
            results[store.name] = StorePrune(
                store.name, store_policy(resources, store.name), error=describe_failure(error)
            )
            log.warning(
                "store %s: cannot list snapshots: %s", store.name, results[store.name].error
            )
    protected = protected_snapshots(resources, listings)
    moment = now or datetime.now(UTC)
    for store in resources.stores:
        if store.name in listings:
            results[store.name] = prune_store(
                resources, store, listings[store.name], protected, dry_run=dry_run, now=moment
            )
    return PruneResult(plan, dry_run, protected, [results[s.name] for s in resources.stores])


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
    passed = catalog.last_drill(resources.plan.name, outcome="passed") if catalog else None
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
    store: Store,
    snapshot_ids: list[str],
    protected: Mapping[str, str],
    *,
    dry_run: bool,
    now: datetime,
) -> StorePrune:
    """Decide for one store and, unless ``dry_run``, delete what the decision lets go."""
    plan = resources.plan.name
    policy = store_policy(resources, store.name)
    timed = [(i, t) for i in snapshot_ids if (t := snapshot_time(i)) is not None]
    decision = select_kept(timed, policy, protected=protected)
    outcome = StorePrune(store.name, policy, {key: list(why) for key, why in decision.kept.items()})
    reporter = unwrap_store(store)
    try:
        for snapshot_id in reversed(decision.deleted):  # oldest first
            until = locked_until(reporter, store, plan, snapshot_id, now)
            if until is not None:
                outcome.locked[snapshot_id] = until
                log.info("store %s: %s is locked until %s", store.name, snapshot_id, until)
            elif not dry_run:
                delete_snapshot(resources, store, snapshot_id, outcome)
            else:
                outcome.deleted.append(snapshot_id)
        if outcome.deleted and not dry_run and isinstance(reporter, CompactingStore):
            reporter.compact()
            outcome.compacted = True
    except StoreError as error:
        outcome.error = describe_failure(error)
        log.error("store %s: prune stopped: %s", store.name, outcome.error)
    return outcome


def locked_until(
    reporter: object, store: Store, plan: str, snapshot_id: str, now: datetime
) -> datetime | None:
    """The latest Object Lock retain-until among a snapshot's objects still under retention
    at ``now``, or None (nothing locked, or a store without Object Lock)."""
    if not isinstance(reporter, LockReporting):
        return None
    latest: datetime | None = None
    for key in store.list(snapshot_prefix(plan, snapshot_id)):
        with contextlib.suppress(ObjectNotFound):  # gone meanwhile: nothing to hold back
            mode, until = reporter.lock_status(key)
            if mode is not None and until is not None and until > now:
                latest = until if latest is None else max(latest, until)
    return latest


def delete_snapshot(
    resources: Resources, store: Store, snapshot_id: str, outcome: StorePrune
) -> None:
    """Delete one snapshot from one store: the manifest (undoing the commit), then every
    other object of the snapshot. StoreError passes through."""
    plan = resources.plan.name
    keys = store.list(snapshot_prefix(plan, snapshot_id))  # before the manifest goes
    manifest = manifest_key(plan, snapshot_id)
    store.delete(manifest)
    outcome.deleted.append(snapshot_id)
    if resources.catalog is not None:
        resources.catalog.mark_copy_deleted(snapshot_id, store.name)
    log.info("store %s: deleted snapshot %s", store.name, snapshot_id)
    for key in keys:
        if key != manifest:
            store.delete(key)
