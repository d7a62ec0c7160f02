"""`drkit catalog rebuild`: recreate the catalog's view of a plan from store manifests."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from drkit.actions.fanout import describe_failure
from drkit.actions.locate import list_store_snapshot_ids, read_manifest
from drkit.actions.resources import Resources
from drkit.errors import CatalogError, DrkitError, StoreUnavailable
from drkit.manifest import Manifest, sha256_hex

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
    result = RebuildResult()
    found: list[tuple[str, str, Manifest, str]] = []
    for store in resources.stores:
        if store_name is not None and store.name != store_name:
            continue
        try:
            ids = list_store_snapshot_ids(store, resources.plan.name)
        except DrkitError as error:
            result.problems.append(f"{store.name}: {describe_failure(error)}")
            continue
        result.stores.append(store.name)
        for snapshot_id in ids:
            try:
                manifest, data = read_manifest(store, resources.plan.name, snapshot_id)
            except DrkitError as error:
                result.problems.append(f"{store.name} {snapshot_id}: {describe_failure(error)}")
                continue
            found.append((store.name, store.region, manifest, sha256_hex(data)))
            result.snapshots.add(snapshot_id)
    if not result.stores:
        raise StoreUnavailable("no store could be read: " + "; ".join(result.problems))
    resources.catalog.rebuild(resources.plan.name, found)
    for problem in result.problems:
        log.warning("rebuild: %s", problem)
    return result
