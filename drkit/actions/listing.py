"""`drkit snapshots`: what exists. From the catalog, or from one store's own manifests (each
one opened, so a forged or damaged snapshot shows as such), with the stores that lack
snapshots other stores hold named, and what the catalog knows of each snapshot's
verifications and drills."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drkit.actions.inspection import CopyState, copy_state, drill_to_json
from drkit.actions.resources import Resources
from drkit.catalog.records import DrillRecord
from drkit.repository import (
    SnapshotEntry,
    find_lagging_stores,
    find_snapshots,
    list_store_snapshots,
    prove_entry,
)


@dataclass
class SnapshotListing:
    entries: list[SnapshotEntry]
    lagging: list[str] = field(default_factory=list)
    #: snapshot id -> the catalog's copies of it in the stores listed (verification state)
    copies: dict[str, list[CopyState]] = field(default_factory=dict)
    #: snapshot id -> its drills, newest first
    drills: dict[str, list[DrillRecord]] = field(default_factory=dict)
    #: False without a catalog: verifications and drills are then unknown, not absent
    has_catalog: bool = True

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                **entry.to_json(),
                "verified": [copy.to_json() for copy in self.copies.get(entry.snapshot_id, [])]
                if entry.snapshot_id in self.copies
                else None,
                "drills": [drill_to_json(d) for d in self.drills.get(entry.snapshot_id, [])]
                if self.has_catalog
                else None,
            }
            for entry in self.entries
        ]


def list_snapshots(resources: Resources, *, store_name: str | None = None) -> SnapshotListing:
    repository = resources.repository
    entries = find_snapshots(repository, resources.catalog, store_name=store_name)
    listing = SnapshotListing(entries)
    if store_name is not None:
        for entry in entries:
            prove_entry(repository, entry)
        stores = [store.name for store in repository.stores]
        listings, _ = list_store_snapshots(repository, stores)
        lags = find_lagging_stores(listings)
        listing.lagging = [lag.describe() for lag in lags if lag.store == store_name]
    add_catalog_state(resources, listing)
    return listing


def add_catalog_state(resources: Resources, listing: SnapshotListing) -> None:
    """What the catalog recorded of each listed snapshot: its copies' last verification (in
    the stores listed) and its drills. Nothing without a catalog."""
    catalog = resources.catalog
    if catalog is None:
        listing.has_catalog = False
        return
    plan = resources.plan.name
    records = {record.id: record for record in catalog.list_snapshots(plan)}
    for entry in listing.entries:
        record = records.get(entry.snapshot_id)
        if record is not None:
            listing.copies[entry.snapshot_id] = [
                copy_state(copy) for copy in record.copies if copy.store in entry.stores
            ]
    for drill in catalog.list_drills(plan):
        listing.drills.setdefault(drill.snapshot_id, []).append(drill)
