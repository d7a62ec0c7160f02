"""Finding snapshots: from the catalog when it knows them, from the stores' manifests when the
catalog is gone (DESIGN promise 4: stores are self-describing), and comparing what stores hold
so a store that lost or rolled back snapshots is named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from drkit.errors import (
    DrkitError,
    SnapshotNotFound,
    StoreError,
    StoreUnavailable,
    describe_failure,
)
from drkit.repository.layout import snapshot_time
from drkit.repository.repository import Repository

if TYPE_CHECKING:
    from drkit.catalog import Catalog

log = logging.getLogger(__name__)


@dataclass
class SnapshotEntry:
    """A snapshot and the stores that hold a complete copy of it.

    ``origin`` is ``catalog`` (recorded by drkit at backup time) or ``stores`` (found in store
    listings; ``proven`` once a store's manifest authenticated, ``damaged`` when none did)."""

    snapshot_id: str
    taken_at: datetime | None
    stores: list[str]
    status: str = "complete"
    origin: str = "catalog"
    #: store -> manifest hash recorded in the catalog for that copy
    manifest_sha256: dict[str, str | None] = field(default_factory=dict)
    #: store -> why its copy did not prove the snapshot (stores origin, once proven)
    problems: dict[str, str] = field(default_factory=dict)
    authenticated: bool = True
    #: keys every artifact of the snapshot was written for: any one of them restores it
    keys: list[str] = field(default_factory=list)
    #: the sources captured, and the bytes of data a restore writes (once known)
    sources: list[str] = field(default_factory=list)
    size: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "snapshot_id": self.snapshot_id,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "status": self.status,
            "stores": self.stores,
            "origin": self.origin,
            "problems": self.problems,
            "authenticated": self.authenticated,
            "keys": self.keys,
            "sources": self.sources,
            "plaintext_bytes": self.size,
        }


def keys_of_all(key_lists: Sequence[Sequence[str]]) -> list[str]:
    """The keys that open every artifact (in the first artifact's order)."""
    if not key_lists:
        return []
    common = set(key_lists[0]).intersection(*key_lists[1:])
    return [key for key in key_lists[0] if key in common]


def list_store_snapshots(
    repository: Repository, stores: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Snapshot ids per reachable store, and why the others could not be listed."""
    listings: dict[str, list[str]] = {}
    unreachable: dict[str, str] = {}
    for name in stores:
        try:
            listings[name] = repository.list_snapshot_ids(repository.store(name))
        except StoreError as error:
            unreachable[name] = describe_failure(error)
            log.warning("store %s: cannot list snapshots: %s", name, unreachable[name])
    return listings, unreachable


def snapshots_from_stores(repository: Repository, stores: Sequence[str]) -> list[SnapshotEntry]:
    """Merge what each reachable store lists, newest first (listed, not yet proven)."""
    listings, unreachable = list_store_snapshots(repository, stores)
    if not listings and stores:
        raise StoreUnavailable(
            "no store could be reached to list snapshots: "
            + "; ".join(f"{name}: {why}" for name, why in unreachable.items())
        )
    entries: dict[str, SnapshotEntry] = {}
    for name, snapshot_ids in listings.items():
        for snapshot_id in snapshot_ids:
            entry = entries.setdefault(
                snapshot_id,
                SnapshotEntry(snapshot_id, snapshot_time(snapshot_id), [], "listed", "stores"),
            )
            entry.stores.append(name)
    return sorted(entries.values(), key=lambda entry: entry.snapshot_id, reverse=True)


def prove_entry(repository: Repository, entry: SnapshotEntry) -> bool:
    """Open the entry's manifest in each store listing it; keep only the stores that prove
    it. True when at least one does (its status becomes ``complete``, else ``damaged``)."""
    if entry.origin == "catalog" or entry.status != "listed":
        return entry.status == "complete"
    proven = []
    for name in entry.stores:
        try:
            opened = repository.open_manifest(repository.store(name), entry.snapshot_id)
        except DrkitError as error:
            entry.problems[name] = describe_failure(error).removeprefix(f"store {name}: ")
            continue
        proven.append(name)
        entry.taken_at = opened.manifest.taken_at
        entry.keys = keys_of_all([a.key_names for a in opened.manifest.artifacts])
        entry.sources = list(opened.manifest.sources)
        entry.size = sum(artifact.plaintext_size for artifact in opened.manifest.artifacts)
        entry.authenticated = entry.authenticated and opened.authenticated
    entry.stores = proven
    entry.status = "complete" if proven else "damaged"
    return bool(proven)


def snapshots_from_catalog(catalog: Catalog | None, plan: str) -> list[SnapshotEntry]:
    """Complete snapshots the catalog knows, newest first (empty when there is no catalog)."""
    if catalog is None:
        return []
    entries = []
    for record in catalog.list_snapshots(plan):
        stores = list(record.complete_stores())
        if stores:
            recorded = {
                copy.store: copy.manifest_sha256 or record.manifest_sha256
                for copy in record.copies
                if copy.store in stores
            }
            entries.append(
                SnapshotEntry(
                    record.id,
                    record.taken_at,
                    stores,
                    record.status,
                    "catalog",
                    recorded,
                    keys=keys_of_all([list(a.key_names) for a in record.artifacts]),
                    sources=list(record.sources),
                    size=record.plaintext_size,
                )
            )
    return entries


def find_snapshots(
    repository: Repository,
    catalog: Catalog | None,
    *,
    store_name: str | None = None,
    snapshot_id: str | None = None,
) -> list[SnapshotEntry]:
    """The catalog's view, or the stores' own when the catalog is empty, a store is named, or
    the catalog does not know ``snapshot_id`` (a snapshot it never recorded, or lost)."""
    if store_name is None:
        entries = snapshots_from_catalog(catalog, repository.plan)
        known = snapshot_id is None or any(e.snapshot_id == snapshot_id for e in entries)
        if entries and known:
            return entries
        log.info("the catalog does not know the snapshot(s) asked for; asking the stores")
        return snapshots_from_stores(repository, [store.name for store in repository.stores])
    return snapshots_from_stores(repository, [repository.store(store_name).name])


Prover = Callable[[SnapshotEntry], bool]


def choose_snapshot(
    entries: Sequence[SnapshotEntry],
    *,
    snapshot_id: str | None = None,
    before: datetime | None = None,
    prove: Prover | None = None,
) -> SnapshotEntry:
    """The named snapshot, the newest taken before a time, or the newest complete one.

    When drkit chooses (no ``snapshot_id``), entries found in store listings are proven
    (``prove``) first: a snapshot no store can prove is skipped with a warning, so a forged or
    damaged newest snapshot cannot block a restore of the intact one before it. A named
    snapshot is returned as listed; restoring it proves it store by store."""
    if snapshot_id is not None:
        for entry in entries:
            if entry.snapshot_id == snapshot_id:
                return entry
        raise SnapshotNotFound(f"snapshot {snapshot_id} is not in the catalog nor in any store")
    candidates = [e for e in entries if e.status in ("complete", "listed")]
    if before is not None:
        candidates = [e for e in candidates if e.taken_at is not None and e.taken_at < before]
    for entry in sorted(candidates, key=lambda e: e.snapshot_id, reverse=True):
        if prove is None or prove(entry):
            return entry
        log.warning(
            "skipping snapshot %s: no store proves it (%s)",
            entry.snapshot_id,
            "; ".join(f"{k}: {v}" for k, v in entry.problems.items()),
        )
    when = f" taken before {before.isoformat()}" if before else ""
    raise SnapshotNotFound(f"no complete snapshot{when} found")


@dataclass(frozen=True)
class Lag:
    """Store ``store`` lacks ``missing`` (oldest first), which ``other`` holds, all newer
    than the newest snapshot ``store`` holds."""

    store: str
    other: str
    missing: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"store {self.store} lacks {len(self.missing)} snapshot(s) that {self.other} holds "
            f"(newest {self.missing[-1]})"
        )


def find_lagging_stores(listings: Mapping[str, Sequence[str]]) -> list[Lag]:
    """Stores lacking snapshots another store holds that are newer than their own newest: the
    sign of a store rolled back (its newest manifests deleted), or of backups to it failing.
    Older gaps are left out: per-store retention may prune them legitimately."""
    lags = []
    for name, held in listings.items():
        newest = max(held, default="")
        for other, other_held in listings.items():
            missing = tuple(sorted(i for i in other_held if i > newest and i not in held))
            if other != name and missing:
                lags.append(Lag(name, other, missing))
    return lags
