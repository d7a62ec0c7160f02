"""`drkit catalog rebuild`: recreate the catalog's view of a plan from store manifests. Only
manifests that open (authenticated, or the 0.1.0 format where it is still believable) are
recorded; the others are reported."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from drkit.actions.resources import Resources
from drkit.errors import CatalogError, DrkitError, StoreUnavailable, describe_failure
from drkit.repository import Manifest, list_store_snapshots

log = logging.getLogger(__name__)


@dataclass
class RebuildResult:
    snapshots: set[str] = field(default_factory=set)
    stores: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "snapshots": sorted(self.snapshots),
            "stores": self.stores,
            "problems": self.problems,
        }


def rebuild_catalog(resources: Resources, *, store_name: str | None = None) -> RebuildResult:
    """Read every manifest of the plan in the chosen stores (all by default) into the catalog."""
    if resources.catalog is None:
        raise CatalogError("no catalog to rebuild into")
    repository = resources.repository
    names = (
        [repository.store(store_name).name] if store_name else [s.name for s in repository.stores]
    )
    listings, unreachable = list_store_snapshots(repository, names)
    result = RebuildResult(stores=list(listings))
    result.problems += [f"{name}: {why}" for name, why in unreachable.items()]
    if not listings:
        raise StoreUnavailable("no store could be read: " + "; ".join(result.problems))
    found: list[tuple[str, str, Manifest, str]] = []
    for name, snapshot_ids in listings.items():
        store = repository.store(name)
        for snapshot_id in snapshot_ids:
            try:
                opened = repository.open_manifest(store, snapshot_id)
            except DrkitError as error:
                result.problems.append(f"{name} {snapshot_id}: {describe_failure(error)}")
                continue
            found.append((name, store.region, opened.manifest, opened.sha256))
            result.snapshots.add(snapshot_id)
    resources.catalog.rebuild(resources.plan.name, found)
    for problem in result.problems:
        log.warning("rebuild: %s", problem)
    return result
