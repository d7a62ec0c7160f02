"""`drkit status`: where each plan stands right now, computed from the catalog.

RPO is counted two ways (DESIGN promise 7): from the newest snapshot that is complete in the
number of stores and regions the plan requires, and from the newest one a drill verified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from drkit.catalog import Catalog, DrillRecord, RunRecord, SnapshotRecord
from drkit.plan.schema import Plan


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

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    def to_json(self) -> dict[str, object]:
        return {
            "plan": self.plan,
            "checked_at": self.now.isoformat(),
            "last_backup": None
            if self.last_backup is None
            else {
                "run_id": self.last_backup.id,
                "started_at": self.last_backup.started_at.isoformat(),
                "outcome": self.last_backup.outcome,
                "error": self.last_backup.error,
            },
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
            "breaches": self.breaches,
            "ok": not self.breached,
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


def plan_status(catalog: Catalog, plan: Plan, now: datetime | None = None) -> PlanStatus:
    now = now or datetime.now(UTC)
    snapshots = catalog.list_snapshots(plan.name)
    newest = next((s for s in snapshots if meets_copy_policy(plan, s)), None)
    passed = catalog.last_drill(plan.name, outcome="passed")
    verified = next((s for s in snapshots if passed and s.id == passed.snapshot_id), None)
    status = PlanStatus(
        plan.name,
        now,
        catalog.last_run(plan.name, "backup"),
        newest,
        verified,
        catalog.last_drill(plan.name),
    )
    if newest is not None:
        status.rpo_seconds = (now - newest.taken_at).total_seconds()
        status.copies = [
            {"store": c.store, "region": c.region, "status": c.status, "verified": c.last_verify_ok}
            for c in newest.copies
        ]
    if verified is not None:
        status.verified_rpo_seconds = (now - verified.taken_at).total_seconds()
    _judge(plan, status)
    return status


def _judge(plan: Plan, status: PlanStatus) -> None:
    from drkit.plan.durations import humanize_seconds as human

    if plan.objectives is None:
        return
    status.rpo_objective = plan.objectives.rpo.total_seconds()
    status.rto_objective = plan.objectives.rto.total_seconds()
    if status.rpo_seconds is None:
        status.breaches.append("no snapshot meets the copy policy")
    elif status.rpo_seconds > status.rpo_objective:
        status.breaches.append(
            f"RPO {human(status.rpo_seconds)} > objective {human(status.rpo_objective)}"
        )
    drill = status.last_drill
    if (
        drill is not None
        and drill.rto_seconds is not None
        and drill.rto_seconds > status.rto_objective
    ):
        status.breaches.append(
            f"last drill RTO {human(drill.rto_seconds)} > objective {human(status.rto_objective)}"
        )
    if drill is not None and drill.outcome not in ("passed", "breached"):
        status.breaches.append(f"last drill {drill.outcome}")
