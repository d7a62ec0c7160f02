"""What kinds of temporary things drkit leases, and which function removes each kind's
leftovers when their owner died.

A cleaner is ``def clean(lease: Lease, plan: Plan | None) -> None``: it removes what the lease
names, tolerating parts that are already gone (it may run again after a failure half way), and
raises (any exception; a DrkitError gives the clearest report) when something stays. ``plan``
is the lease's plan when the sweeping command loaded it; a cleaner that needs the plan (its
stores, its secrets) and gets None raises ``PlanNeeded``. Cleaners are imported only when a
lease of their kind is swept, so this table costs nothing at start-up and the modules they
live in may import whatever they need.
"""

from __future__ import annotations

from typing import Any

from drkit.errors import DrkitError

#: A plan as the sweeping command loaded it: a ``drkit.plan.schema.Plan``, named loosely
#: here because leases sit below the plan layer (the process gateway uses them).
PlanLike = Any

#: lease kind -> (module, function) of its cleaner, in the order kinds are swept: processes
#: and servers before the folders they may live in.
CLEANERS: dict[str, tuple[str, str]] = {
    "ephemeral-postgresql": ("drkit.sandboxes.cluster", "remove_leftover_cluster"),
    "scratch-postgresql": ("drkit.sandboxes.scratch_postgres", "remove_leftover_databases"),
    "scratch-mysql": ("drkit.sandboxes.scratch_mysql", "remove_leftover_databases"),
    "restoring-copy": ("drkit.sources.swap", "remove_leftover_copy"),
    "uncommitted-snapshot": ("drkit.repository.leftovers", "remove_uncommitted_snapshot"),
    "process": ("drkit.leases.scratch", "remove_leftover_scratch"),
    "directory": ("drkit.leases.folders", "remove_leftover_directory"),
    "file": ("drkit.leases.folders", "remove_leftover_file"),
}


class PlanNeeded(DrkitError):
    """A cleaner needs the lease's plan, and the sweeping command did not load it."""

    default_hint = "run `drkit cleanup PLAN` with the plan file of that plan"
