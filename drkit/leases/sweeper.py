"""Finding and removing what dead drkit processes left: every lease whose owner has certainly
ended is handed to its kind's cleaner, then forgotten.

Two sweepers (two commands starting at once) never clean one lease together: each claims the
lease file with an exclusive ``flock`` first and skips a lease already claimed or removed.
A cleaner that fails leaves its lease for the next sweep, and the failure is reported.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from drkit.errors import DrkitError
from drkit.leases.kinds import CLEANERS, PlanLike, PlanNeeded
from drkit.leases.processes import is_owner_alive, is_process_alive
from drkit.leases.registry import Lease, lease_folder, list_leases

log = logging.getLogger(__name__)
Cleaner = Callable[[Lease, PlanLike | None], None]


@dataclass(frozen=True)
class Leftover:
    """One thing a dead process left, and what the sweep did about it."""

    kind: str
    description: str
    plan: str | None
    owner_pid: int
    #: removed | would be removed (dry run) | failed | needs the plan
    state: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "plan": self.plan,
            "owner_pid": self.owner_pid,
            "state": self.state,
            "detail": self.detail,
        }


def sweep(plans: Mapping[str, PlanLike] | None = None, *, dry_run: bool = False) -> list[Leftover]:
    """Clean up after dead owners: leases of no plan and of ``plans`` (by name), or of every
    plan when ``plans`` is None (cleaners that need a plan then report so)."""
    remove_partial_lease_files()
    found = [
        (path, lease)
        for path, lease in list_leases()
        if (plans is None or lease.plan is None or lease.plan in plans)
        and not is_owner_alive(lease.owner)
    ]
    order = list(CLEANERS)
    found.sort(key=lambda item: order.index(item[1].kind) if item[1].kind in order else len(order))
    results = []
    for path, lease in found:
        plan = plans.get(lease.plan) if plans is not None and lease.plan else None
        result = _sweep_one(path, lease, plan, dry_run=dry_run)
        if result is not None:
            results.append(result)
    return results


def _sweep_one(
    path: Path, lease: Lease, plan: PlanLike | None, *, dry_run: bool
) -> Leftover | None:
    def leftover(state: str, detail: str = "") -> Leftover:
        return Leftover(lease.kind, lease.description, lease.plan, lease.owner.pid, state, detail)

    if dry_run:
        return leftover("would be removed")
    with _claimed(path) as claimed:
        if claimed is None:
            return None  # another sweeper has it, or has just removed it
        try:
            find_cleaner(lease.kind)(lease, plan)
        except PlanNeeded as error:
            return leftover("needs the plan", error.message)
        except Exception as error:  # any failure: report it, keep the lease, sweep on
            detail = error.message if isinstance(error, DrkitError) else str(error)
            log.warning(
                "could not remove %s left by pid %s: %s", lease.description, lease.owner.pid, detail
            )
            return leftover("failed", detail)
        path.unlink()
    log.info("removed %s left by drkit process %s, which died", lease.description, lease.owner.pid)
    return leftover("removed")


@contextlib.contextmanager
def _claimed(path: Path) -> Iterator[IO[str] | None]:
    """The lease file, locked for this sweeper; None when it is gone or locked elsewhere."""
    try:
        handle = path.open("r", encoding="utf-8")
    except FileNotFoundError:
        yield None
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        # Removed by the sweeper that held the lock before us: nothing left to do.
        yield None if os.fstat(handle.fileno()).st_nlink == 0 else handle


def find_cleaner(kind: str) -> Cleaner:
    """The cleaner of a lease kind (imported now); KeyError for a kind drkit does not know."""
    module, function = CLEANERS[kind]
    cleaner: Cleaner = getattr(importlib.import_module(module), function)
    return cleaner


def remove_partial_lease_files() -> None:
    """Half-written lease files (``.NAME.<pid>.partial``) of processes that are gone."""
    for path in lease_folder().glob(".*.partial"):
        pid = path.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not is_process_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
