"""`drkit status`: where each plan stands right now, computed from the catalog.

RPO is counted two ways (DESIGN promise 7): from the newest snapshot that is complete in the
number of stores and regions the plan requires, and from the newest one a drill verified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from drkit.catalog import Catalog, DrillRecord, PlanPolicy, PlanState, RunRecord, SnapshotRecord
from drkit.outcome import Outcome
from drkit.plan.schema import Plan
from drkit.report.windows import PitrStatus, pitr_status


@dataclass
class PlanStatus:
    plan: str
    now: datetime
    last_backup: RunRecord | None
    newest_complete: SnapshotRecord | None
    newest_verified: SnapshotRecord | None
    last_drill: DrillRecord | None
    copies: list[dict[str, object]] = field(default_factory=list)
    rpo_seconds: float | None = None
    verified_rpo_seconds: float | None = None
    rpo_objective: float | None = None
    rto_objective: float | None = None
    breaches: list[str] = field(default_factory=list)
    last_verify: RunRecord | None = None
    #: continuous archiving (sources with pitr:): windows per store, RPO from their end
    pitr: list[PitrStatus] = field(default_factory=list)

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    def to_json(self) -> dict[str, object]:
        return {
            "plan": self.plan,
            "checked_at": self.now.isoformat(),
            "last_backup": _run_json(self.last_backup),
            "newest_complete_snapshot": _snapshot_id(self.newest_complete),
            "newest_verified_snapshot": _snapshot_id(self.newest_verified),
            "copies": self.copies,
            "rpo_seconds": _round(self.rpo_seconds),
            "verified_rpo_seconds": _round(self.verified_rpo_seconds),
            "rpo_objective_seconds": self.rpo_objective,
            "last_drill": None
            if self.last_drill is None
            else {
                "id": self.last_drill.id,
                "snapshot_id": self.last_drill.snapshot_id,
                "started_at": self.last_drill.started_at.isoformat(),
                "outcome": self.last_drill.outcome,
                "store": self.last_drill.store,
                "rto_seconds": _round(self.last_drill.rto_seconds),
            },
            "rto_objective_seconds": self.rto_objective,
            "last_verify": _run_json(self.last_verify),
            "breaches": self.breaches,
            "ok": not self.breached,
            **({"pitr": [entry.to_json(self.now) for entry in self.pitr]} if self.pitr else {}),
        }


def _run_json(run: RunRecord | None) -> dict[str, object] | None:
    if run is None:
        return None
    return {
        "run_id": run.id,
        "started_at": run.started_at.isoformat(),
        "outcome": run.outcome,
        "error": run.error,
    }


def _snapshot_id(record: SnapshotRecord | None) -> str | None:
    return None if record is None else record.id


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def meets_copy_policy(plan: Plan, snapshot: SnapshotRecord) -> bool:
    """Complete in at least min_stores stores spanning min_regions regions."""
    complete = [c for c in snapshot.copies if c.status == "complete"]
    regions = {c.region for c in complete}
    return (
        snapshot.status == "complete"
        and len(complete) >= plan.copies.min_stores
        and len(regions) >= plan.copies.min_regions
    )


#: the jobs whose runs status reads
STATUS_JOBS = ("backup", "verify")


def plan_policy(plan: Plan) -> PlanPolicy:
    """What the catalog needs of a plan to find its newest policy-meeting snapshot."""
    return PlanPolicy(
        plan.name,
        plan.copies.min_stores,
        plan.copies.min_regions,
        tuple(store.name for store in plan.stores),
    )


def plan_statuses(
    catalog: Catalog, plans: Sequence[Plan], now: datetime | None = None
) -> list[PlanStatus]:
    """Where each plan stands, from a few catalog queries for all of them together."""
    now = now or datetime.now(UTC)
    # status reads the last backup and verify, and no store's newest copy: only those
    policies = [replace(plan_policy(plan), stores=()) for plan in plans]
    states = catalog.plan_states(policies, jobs=STATUS_JOBS)
    return [status_from_state(plan, states[plan.name], now, catalog) for plan in plans]


def plan_status(catalog: Catalog, plan: Plan, now: datetime | None = None) -> PlanStatus:
    return plan_statuses(catalog, [plan], now)[0]


def status_from_state(
    plan: Plan, state: PlanState, now: datetime, catalog: Catalog | None = None
) -> PlanStatus:
    """The plan's status from its catalog state; with ``catalog``, the recoverable windows of
    its ``pitr:`` sources too (read only for plans that have one)."""
    newest, verified = state.newest_complete, state.drill_verified
    status = PlanStatus(
        plan.name,
        now,
        state.job("backup").last,
        newest,
        verified,
        state.last_drill,
        last_verify=state.job("verify").finished,
    )
    if newest is not None:
        status.rpo_seconds = (now - newest.taken_at).total_seconds()
        status.copies = [
            {"store": c.store, "region": c.region, "status": c.status, "verified": c.last_verify_ok}
            for c in newest.copies
        ]
    if verified is not None:
        status.verified_rpo_seconds = (now - verified.taken_at).total_seconds()
    status.pitr = pitr_status(catalog, plan, now) if catalog is not None else []
    for entry in status.pitr:  # with continuous archiving, the recovery point is the window's end
        if entry.rpo_seconds is not None and (
            status.rpo_seconds is None or entry.rpo_seconds < status.rpo_seconds
        ):
            status.rpo_seconds = entry.rpo_seconds
        status.breaches += entry.breaches
    _judge(plan, status)
    _judge_verification(status)
    return status


def _judge_verification(status: PlanStatus) -> None:
    """A copy a verify found damaged is a breach whatever the objectives: the figures above
    would otherwise count on a copy that does not restore."""
    verify = status.last_verify
    if verify is not None and verify.outcome not in (Outcome.OK, Outcome.INTERRUPTED):
        status.breaches.append(f"last verify {verify.outcome}: {verify.error or 'see its run'}")
    for copy in status.newest_complete.copies if status.newest_complete else ():
        if copy.last_verify_ok is False:
            status.breaches.append(f"copy in {copy.store} failed verification")


def _judge(plan: Plan, status: PlanStatus) -> None:
    """Breaches of the plan's objectives; with or without objectives, nothing to restore or
    a last drill that failed is never ok."""
    from drkit.plan.durations import humanize_seconds as human

    if status.rpo_seconds is None:
        status.breaches.append("no snapshot meets the copy policy")
    drill = status.last_drill
    if plan.objectives is not None:
        status.rpo_objective = plan.objectives.rpo.total_seconds()
        status.rto_objective = plan.objectives.rto.total_seconds()
        if status.rpo_seconds is not None and status.rpo_seconds > status.rpo_objective:
            status.breaches.append(
                f"RPO {human(status.rpo_seconds)} > objective {human(status.rpo_objective)}"
            )
        if (
            drill is not None
            and drill.rto_seconds is not None
            and drill.rto_seconds > status.rto_objective
        ):
            status.breaches.append(
                f"last drill RTO {human(drill.rto_seconds)} > objective "
                f"{human(status.rto_objective)}"
            )
    if drill is not None and drill.outcome not in (Outcome.OK, Outcome.BREACHED):
        status.breaches.append(f"last drill {drill.outcome}")
