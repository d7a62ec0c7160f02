"""Removing what backups that never committed left in stores (DESIGN promise 10).

Two ways a leftover is found: the lease a backup holds while it writes (its owner died: the
next drkit command on the plan hands it to ``remove_uncommitted_snapshot``), and, for backups
that ran on another host or in a pod whose leases are gone, by age: objects of a snapshot with
no manifest, older than ``UNCOMMITTED_GRACE``, which no backup can still be writing
(``remove_stale_uncommitted``, run by prune).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from drkit.errors import StoreError, StoreUnavailable, describe_failure
from drkit.repository.layout import snapshot_time
from drkit.repository.repository import Repository

log = logging.getLogger(__name__)
#: far longer than any backup runs (drkit run's default backup timeout is 6 hours)
UNCOMMITTED_GRACE = timedelta(hours=48)


def remove_uncommitted_snapshot(lease: Any, plan: Any) -> None:
    """The cleaner of an ``uncommitted-snapshot`` lease (see ``drkit.leases.kinds``): remove
    the snapshot's objects from every store of the plan where it has no manifest. Raises when
    a store cannot be reached, so the lease stays and a later command tries again."""
    from drkit.leases.kinds import PlanNeeded
    from drkit.stores import make_stores

    if plan is None:
        raise PlanNeeded(f"the objects of {lease.description} are in the plan's stores")
    repository = Repository(plan.name, make_stores(plan), [])
    snapshot_id = str(lease.data["snapshot_id"])
    problems = []
    for store in repository.stores:
        try:
            removed = repository.remove_uncommitted(store, snapshot_id)
        except StoreError as error:
            problems.append(f"{store.name}: {describe_failure(error)}")
            continue
        if removed:
            log.info(
                "store %s: removed %d object(s) of uncommitted %s",
                store.name,
                len(removed),
                snapshot_id,
            )
    if problems:
        raise StoreUnavailable(f"cannot remove uncommitted {snapshot_id}: " + "; ".join(problems))


def remove_stale_uncommitted(
    repository: Repository, store_name: str, *, now: datetime | None = None, dry_run: bool = False
) -> list[str]:
    """Ids of snapshots older than the grace period whose objects sit in the store without a
    manifest; removed unless ``dry_run``. StoreError passes through."""
    store = repository.store(store_name)
    cutoff = (now or datetime.now(UTC)) - UNCOMMITTED_GRACE
    stale = [
        snapshot_id
        for snapshot_id in repository.list_uncommitted_ids(store)
        if (taken := snapshot_time(snapshot_id)) is not None and taken < cutoff
    ]
    for snapshot_id in stale if not dry_run else []:
        repository.remove_uncommitted(store, snapshot_id)
        log.info("store %s: removed the leftovers of uncommitted %s", store_name, snapshot_id)
    return stale
