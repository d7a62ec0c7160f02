"""Finding snapshots: from the catalog when it knows them, from the stores' manifests when the
catalog is gone (DESIGN promise 4: stores are self-describing)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from drkit.actions.fanout import describe_failure
from drkit.actions.resources import Resources
from drkit.errors import DrkitError, SnapshotNotFound, StoreError
from drkit.manifest import (
    Manifest,
    manifest_key,
    snapshot_ids_from_keys,
    snapshot_prefix,
    snapshot_time,
)
from drkit.stores.base import Store

log = logging.getLogger(__name__)


@dataclass
class SnapshotEntry:
    """A snapshot and the stores known to hold a complete copy of it."""

    snapshot_id: str
    taken_at: datetime | None
    stores: list[str]
    status: str = "complete"
    origin: str = "catalog"  # or "stores"
    manifests: dict[str, Manifest] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "snapshot_id": self.snapshot_id,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "status": self.status,
            "stores": self.stores,
            "origin": self.origin,
        }


def read_manifest(store: Store, plan: str, snapshot_id: str) -> tuple[Manifest, bytes]:
    """The manifest a store holds for a snapshot, checked to be that snapshot's."""
    data = b"".join(store.get(manifest_key(plan, snapshot_id)))
    return Manifest.from_bytes(data, expect_plan=plan, expect_snapshot=snapshot_id), data


def list_store_snapshot_ids(store: Store, plan: str) -> list[str]:
    """Ids of the snapshots committed in a store (their manifest is there), oldest first."""
    return snapshot_ids_from_keys(plan, store.list(snapshot_prefix(plan)))


def snapshots_from_stores(
    resources: Resources, stores: Sequence[Store], *, read_manifests: bool = False
) -> list[SnapshotEntry]:
    """Merge what each reachable store holds, newest first. Unreachable stores are logged."""
    entries: dict[str, SnapshotEntry] = {}
    reached = 0
    for store in stores:
        try:
            ids = list_store_snapshot_ids(store, resources.plan.name)
        except StoreError as error:
            log.warning("store %s: cannot list snapshots: %s", store.name, describe_failure(error))
            continue
        reached += 1
        for snapshot_id in ids:
            entry = entries.setdefault(
                snapshot_id,
                SnapshotEntry(snapshot_id, snapshot_time(snapshot_id), [], origin="stores"),
            )
            entry.stores.append(store.name)
            if read_manifests:
                try:
                    entry.manifests[store.name] = read_manifest(
                        store, resources.plan.name, snapshot_id
                    )[0]
                except DrkitError as error:
                    log.warning(
                        "store %s: manifest of %s unreadable: %s",
                        store.name,
                        snapshot_id,
                        describe_failure(error),
                    )
    if reached == 0 and stores:
        from drkit.errors import StoreUnavailable

        raise StoreUnavailable("no store could be reached to list snapshots")
    return sorted(entries.values(), key=lambda entry: entry.snapshot_id, reverse=True)


def snapshots_from_catalog(resources: Resources) -> list[SnapshotEntry]:
    """Complete snapshots the catalog knows, newest first (empty when there is no catalog)."""
    if resources.catalog is None:
        return []
    entries = []
    for record in resources.catalog.list_snapshots(resources.plan.name):
        stores = list(record.complete_stores())
        if stores:
            entries.append(SnapshotEntry(record.id, record.taken_at, stores, record.status))
    return entries


def find_snapshots(resources: Resources, *, store_name: str | None = None) -> list[SnapshotEntry]:
    """The catalog's view, or the stores' own when the catalog is empty or a store is named."""
    if store_name is None:
        entries = snapshots_from_catalog(resources)
        if entries:
            return entries
        log.info("the catalog knows no snapshot of %s; asking the stores", resources.plan.name)
        return snapshots_from_stores(resources, resources.stores)
    stores = [store for store in resources.stores if store.name == store_name]
    if not stores:
        from drkit.errors import UsageError

        raise UsageError(f"the plan has no store named {store_name!r}")
    return snapshots_from_stores(resources, stores)


def choose_snapshot(
    entries: Sequence[SnapshotEntry],
    *,
    snapshot_id: str | None = None,
    before: datetime | None = None,
) -> SnapshotEntry:
    """The named snapshot, the newest taken before a time, or the newest complete one."""
    if snapshot_id is not None:
        for entry in entries:
            if entry.snapshot_id == snapshot_id:
                return entry
        raise SnapshotNotFound(f"snapshot {snapshot_id} is not in the catalog nor in any store")
    candidates = [e for e in entries if e.status == "complete"]
    if before is not None:
        candidates = [e for e in candidates if e.taken_at is not None and e.taken_at < before]
    if not candidates:
        when = f" taken before {before.isoformat()}" if before else ""
        raise SnapshotNotFound(f"no complete snapshot{when} found")
    return max(candidates, key=lambda e: e.snapshot_id)
