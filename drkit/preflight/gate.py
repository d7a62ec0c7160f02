"""The fast preflight before ``backup``, ``restore`` and ``drill``: local checks only (no
network), and only problems that would certainly make the command fail stop it, in one line,
before anything is written. Problems the command survives (one store of several without its
secret) are logged as warnings and the command goes on."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from drkit.errors import PreflightError
from drkit.plan.schema import Plan, StoreSpec
from drkit.preflight.checklist import check_plan
from drkit.preflight.finding import Finding

log = logging.getLogger(__name__)
#: the roles of the plan each command uses (see Finding.owner); failures of other roles are
#: not its business: a restore after data loss must not warn that the lost file is missing
ROLES = {
    "backup": ("source", "capture", "key", "store", "notify"),
    "restore": ("source", "load", "key", "store"),
    "drill": ("load", "key", "store", "sandbox"),
}


def require_ready(
    plan: Plan, command: str, plan_file: str, *, sources: Collection[str] = ()
) -> None:
    """Raise PreflightError when ``command`` on ``plan`` (for ``sources``, or all of them)
    cannot succeed; warn about what it can survive."""
    roles = ROLES[command]
    failures = [
        finding
        for finding in check_plan(plan, thorough=False)
        if finding.failed and finding.owner.split(":")[0] in roles
    ]
    chosen = sources or [source.name for source in plan.sources]
    blocking = blocking_findings(plan, failures, command, chosen)
    for finding in failures:
        if finding not in blocking:
            log.warning("preflight: %s %s: %s", finding.area, finding.subject, finding.detail)
    if blocking:
        raise preflight_error(plan, command, plan_file, blocking)


def blocking_findings(
    plan: Plan, failures: list[Finding], command: str, sources: Collection[str]
) -> list[Finding]:
    """The failures ``command`` cannot survive. A backup needs every source, and every key
    (each artifact is written for all of them); restores and drills need one key and one
    store, plus what loads the chosen sources; a drill needs its sandboxes."""
    owners = {finding.owner for finding in failures}
    needed: set[str] = set()
    if command == "backup":
        needed |= {f"{role}:{s.name}" for s in plan.sources for role in ("source", "capture")}
        needed |= {f"key:{key.name}" for key in plan.keys}
    else:
        needed |= {f"load:{name}" for name in sources}
        if command == "restore":
            needed |= {f"source:{name}" for name in sources}  # the target's password
        else:
            needed.add("sandbox")
        if _all_fail(owners, (f"key:{key.name}" for key in plan.keys)):
            needed |= {f"key:{key.name}" for key in plan.keys}
    healthy = [store for store in plan.stores if f"store:{store.name}" not in owners]
    if not healthy or (command == "backup" and not _meets_copy_policy(plan, healthy)):
        needed |= {f"store:{store.name}" for store in plan.stores}
    return [finding for finding in failures if finding.owner in needed]


def _all_fail(failed_owners: set[str], owners: Iterable[str]) -> bool:
    return all(owner in failed_owners for owner in owners)


def _meets_copy_policy(plan: Plan, stores: list[StoreSpec]) -> bool:
    regions = {store.region for store in stores}
    return len(stores) >= plan.copies.min_stores and len(regions) >= plan.copies.min_regions


def preflight_error(
    plan: Plan, command: str, plan_file: str, blocking: list[Finding]
) -> PreflightError:
    first = blocking[0]
    more = len(blocking) - 1
    also = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return PreflightError(
        f"{command} of {plan.name} not started: {first.area} {first.subject}: {first.detail}{also}",
        hint=(f"{first.hint}; " if first.hint else "")
        + f"`drkit check {plan_file}` runs every preflight",
        exit_code=first.exit_code,
        reference=first.reference or None,
    )
