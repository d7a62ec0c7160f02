"""`drkit report`: the evidence an auditor asks for, per plan, over a period, from the catalog.

Backups due (by the plan's schedule) vs taken vs complete; copies per region; encryption keys;
drills run and passed; RTO measured (p50, p95, max) and the worst RPO (largest gap between
complete snapshots, including the gap up to now) against the objectives; every failure with
its reason; snapshot ids with manifest hashes.
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from drkit.catalog import Catalog
from drkit.plan.schema import Plan
from drkit.report.status import meets_copy_policy


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def count_due(cron: str | None, since: datetime, until: datetime) -> int | None:
    """How many times a cron schedule fired in [since, until)."""
    if cron is None:
        return None
    iterator = croniter(cron, since - timedelta(microseconds=1))
    count = 0
    while iterator.get_next(datetime) < until:
        count += 1
    return count


def _rpo_series(times: list[datetime], since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Data-loss window just before each complete snapshot (and now): the gap since the
    previous complete one. The worst of these is the period's worst RPO."""
    series = []
    previous: datetime | None = None
    for moment in [*sorted(times), until]:
        if previous is not None:
            series.append(
                {"at": moment.isoformat(), "gap_seconds": (moment - previous).total_seconds()}
            )
        elif moment > since and moment != until:
            series.append({"at": moment.isoformat(), "gap_seconds": None})
        previous = moment
    return series


def _first_activity(catalog: Catalog, plan: Plan, since: datetime) -> datetime:
    """Backups are due from the later of the period's start and the plan's first run: a plan
    added last week did not miss the backups of the months before."""
    runs = catalog.list_runs(plan.name)
    first = min((run.started_at for run in runs), default=None)
    return max(since, first) if first is not None else since


def plan_report(
    catalog: Catalog, plan: Plan, since: datetime, until: datetime | None = None
) -> dict[str, Any]:
    until = until or datetime.now(UTC)
    snapshots = [s for s in catalog.list_snapshots(plan.name, since=since) if s.taken_at < until]
    runs = [r for r in catalog.list_runs(plan.name, "backup", since) if r.started_at < until]
    drills = [d for d in catalog.list_drills(plan.name, since=since) if d.started_at < until]
    complete = [s for s in snapshots if meets_copy_policy(plan, s)]
    objectives = plan.objectives
    rto_values = [d.rto_seconds for d in drills if d.rto_seconds is not None]
    # The newest complete snapshot before the period bounds the first gap.
    before = [
        s
        for s in catalog.list_snapshots(plan.name)
        if s.taken_at < since and meets_copy_policy(plan, s)
    ]
    times = [s.taken_at for s in complete] + ([before[0].taken_at] if before else [])
    rpo_series = _rpo_series(times, since, until)
    gaps = [point["gap_seconds"] for point in rpo_series if point["gap_seconds"] is not None]
    if not times:
        gaps = [(until - since).total_seconds()]
    regions: Counter[str] = Counter()
    for snapshot in complete:
        for copy in snapshot.copies:
            if copy.status == "complete":
                regions[copy.region or "?"] += 1
    keys = sorted({name for s in snapshots for a in s.artifacts for name in a.key_names})
    failures = [
        {"kind": "backup", "at": r.started_at.isoformat(), "outcome": r.outcome, "reason": r.error}
        for r in runs
        if r.outcome not in ("ok", "running")
    ]
    failures += [
        {"kind": "drill", "at": d.started_at.isoformat(), "outcome": d.outcome, "reason": d.error}
        for d in drills
        if d.outcome != "passed"
    ]
    return {
        "plan": plan.name,
        "description": plan.description,
        "period": {
            "since": since.isoformat(timespec="seconds"),
            "until": until.isoformat(timespec="seconds"),
        },
        "objectives": None
        if objectives is None
        else {
            "rpo_seconds": objectives.rpo.total_seconds(),
            "rto_seconds": objectives.rto.total_seconds(),
        },
        "copy_policy": {
            "min_stores": plan.copies.min_stores,
            "min_regions": plan.copies.min_regions,
        },
        "backups": {
            "due": count_due(plan.schedule.backup, _first_activity(catalog, plan, since), until),
            "taken": len(runs),
            "complete": len(complete),
            "outcomes": dict(Counter(r.outcome for r in runs)),
        },
        "copies_per_region": dict(sorted(regions.items())),
        "encryption": {
            "cipher": "AES-256-GCM (STREAM), per-artifact data keys",
            "compression": plan.compression.algorithm,
            "key_names": keys,
        },
        "drills": {
            "run": len(drills),
            "passed": sum(d.outcome == "passed" for d in drills),
            "rto_p50_seconds": _percentile(rto_values, 0.5),
            "rto_p95_seconds": _percentile(rto_values, 0.95),
            "rto_max_seconds": max(rto_values) if rto_values else None,
            "rto_mean_seconds": statistics.fmean(rto_values) if rto_values else None,
            "series": [
                {
                    "at": d.started_at.isoformat(),
                    "rto_seconds": d.rto_seconds,
                    "outcome": d.outcome,
                    "store": d.store,
                    "snapshot_id": d.snapshot_id,
                }
                for d in sorted(drills, key=lambda d: d.started_at)
            ],
        },
        "rpo": {"worst_seconds": max(gaps) if gaps else None, "series": rpo_series},
        "failures": failures,
        "evidence": [
            {
                "snapshot_id": s.id,
                "taken_at": s.taken_at.isoformat(),
                "status": s.status,
                "manifest_sha256": s.manifest_sha256,
                "stores": [c.store for c in s.copies if c.status == "complete"],
            }
            for s in snapshots
        ],
        "verdict": _verdict(objectives is not None, rto_values, gaps, objectives),
    }


def _verdict(
    has_objectives: bool, rto_values: list[float], gaps: list[float], objectives: Any
) -> dict[str, Any]:
    if not has_objectives:
        return {"rto_met": None, "rpo_met": None}
    rto_met = bool(rto_values) and max(rto_values) <= objectives.rto.total_seconds()
    rpo_met = bool(gaps) and max(gaps) <= objectives.rpo.total_seconds()
    return {"rto_met": rto_met, "rpo_met": rpo_met}
