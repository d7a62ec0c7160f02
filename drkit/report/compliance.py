"""`drkit report`: the evidence an auditor asks for, per plan, over a period, from the catalog.

Backups due (by the plan's schedule) vs taken vs complete; copies per region; encryption keys;
drills run and passed; RTO measured (p50, p95, max) and the worst RPO (largest gap between
complete snapshots, including the gap up to now) against the objectives; every failure with
its reason; snapshot ids with manifest hashes.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from drkit.catalog import Catalog, EvidenceHead, PeriodFacts
from drkit.cron import croniter
from drkit.outcome import Outcome
from drkit.plan.schema import Plan
from drkit.report.status import plan_policy


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


@functools.lru_cache(maxsize=64)
def _count_due_cached(cron: str, since: datetime, until: datetime) -> int | None:
    """count_due once per schedule and period: a fleet's plans share a few schedules."""
    return count_due(cron, since, until)


def _rpo_series(facts: PeriodFacts, until: datetime) -> list[dict[str, Any]]:
    """The longest data-loss window ending each day of the period (the gap between two
    complete snapshots, or up to now), oldest first; the worst of them is the worst RPO."""
    series = dict(facts.daily_worst_gap)
    if facts.complete_before is not None and facts.first_complete is not None:
        day = facts.first_complete.strftime("%Y-%m-%d")
        gap = (facts.first_complete - facts.complete_before).total_seconds()
        series[day] = max(series.get(day, 0.0), gap)
    last = facts.last_complete or facts.complete_before
    if last is not None:
        day = until.strftime("%Y-%m-%d")
        series[day] = max(series.get(day, 0.0), (until - last).total_seconds())
    return [
        {"at": f"{day}T23:59:59+00:00", "gap_seconds": gap} for day, gap in sorted(series.items())
    ]


def plan_report(
    catalog: Catalog, plan: Plan, since: datetime, until: datetime | None = None
) -> dict[str, Any]:
    return plan_reports(catalog, [plan], since, until)[0]


def plan_reports(
    catalog: Catalog, plans: Sequence[Plan], since: datetime, until: datetime | None = None
) -> list[dict[str, Any]]:
    """The report of each plan over [since, until), from totals the catalog computes for
    all the plans together (a fixed number of queries, whatever the history)."""
    until = until or datetime.now(UTC)
    facts = catalog.period_facts([plan_policy(plan) for plan in plans], since, until)
    heads = catalog.evidence_heads([plan.name for plan in plans])
    reports = [_plan_report(plan, facts[plan.name], since, until) for plan in plans]
    for plan, report in zip(plans, reports, strict=True):
        report["evidence_log"] = _evidence_log(plan, heads.get(plan.name))
        report["point_in_time"] = _point_in_time(catalog, plan, until)
    return reports


def _point_in_time(catalog: Catalog, plan: Plan, until: datetime) -> list[dict[str, Any]]:
    """Each pitr source's recoverable window per store and its RPO, as `drkit status` shows
    them (as of the report's end), whatever the engine."""
    if not any(getattr(source, "pitr", None) is not None for source in plan.sources):
        return []
    from drkit.report.windows import pitr_status

    return [entry.to_json(until) for entry in pitr_status(catalog, plan, until)]


def _evidence_log(plan: Plan, head: EvidenceHead | None) -> dict[str, Any] | None:
    """The head of the plan's signed evidence log (as of now, not the period's end) and the
    command that checks a copy of the log against it with the public key alone."""
    if head is None:
        return None
    return {
        "count": head.count,
        "head_sha256": head.hash,
        "recorded_at": head.recorded_at.isoformat(timespec="seconds"),
        "verify_command": (
            f"drkit evidence verify --plan PLAN_FILE --store {plan.stores[0].name} "
            f"--public-key PUBLIC_KEY.pub --head {head.hash} --count {head.count}"
        ),
    }


def _backup_counts(
    plan: Plan, facts: PeriodFacts, since: datetime, until: datetime
) -> dict[str, Any]:
    """Backups due by the schedule and what the run history says became of them: a snapshot
    pruned since is still a backup that succeeded."""
    outcomes = {outcome: n for (kind, outcome), n in facts.runs.items() if kind == "backup"}
    start = max(since, facts.first_run_at) if facts.first_run_at else since
    cron = plan.schedule.backup
    return {
        "due": _count_due_cached(cron, start, until) if cron else None,
        "taken": sum(n for outcome, n in outcomes.items() if outcome != "running"),
        "succeeded": outcomes.get("ok", 0) + outcomes.get("degraded", 0),
        "failed": outcomes.get("failed", 0) + outcomes.get("breached", 0),
        "interrupted": outcomes.get("interrupted", 0),
        "complete": facts.complete,
        "outcomes": dict(sorted(outcomes.items())),
    }


def _failures(facts: PeriodFacts) -> list[dict[str, Any]]:
    failures = [
        {"kind": "backup", "at": at.isoformat(), "outcome": outcome, "reason": error}
        for at, outcome, error in facts.failed_backups
    ]
    failures += [
        {"kind": "drill", "at": d.started_at.isoformat(), "outcome": d.outcome, "reason": d.error}
        for d in facts.drills
        if d.outcome != Outcome.OK
    ]
    # A drill killed before it could record itself left only its run.
    failures += [
        {"kind": "drill", "at": at.isoformat(), "outcome": outcome, "reason": error}
        for _, at, outcome, error in facts.killed_drills
    ]
    return failures


def _drills(facts: PeriodFacts) -> dict[str, Any]:
    drills = facts.drills
    rto_values = [d.rto_seconds for d in drills if d.rto_seconds is not None]
    return {
        "run": len(drills),
        "passed": sum(d.outcome == Outcome.OK for d in drills),
        "interrupted": len(facts.killed_drills),
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
            for d in drills
        ],
    }


def _plan_report(
    plan: Plan, facts: PeriodFacts, since: datetime, until: datetime
) -> dict[str, Any]:
    objectives = plan.objectives
    rto_values = [d.rto_seconds for d in facts.drills if d.rto_seconds is not None]
    rpo_series = _rpo_series(facts, until)
    gaps = [point["gap_seconds"] for point in rpo_series]
    if facts.last_complete is None and facts.complete_before is None:
        gaps = [(until - since).total_seconds()]
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
        "backups": _backup_counts(plan, facts, since, until),
        "copies_per_region": dict(sorted(facts.copies_per_region.items())),
        "encryption": {
            "cipher": "AES-256-GCM (STREAM), per-artifact data keys",
            "compression": plan.compression.algorithm,
            "key_names": sorted(facts.key_names),
        },
        "drills": _drills(facts),
        "rpo": {"worst_seconds": max(gaps) if gaps else None, "series": rpo_series},
        "failures": _failures(facts),
        "evidence_total": facts.snapshots,
        "evidence": [
            {
                "snapshot_id": e.snapshot_id,
                "taken_at": e.taken_at.isoformat(),
                "status": e.status,
                "manifest_sha256": e.manifest_sha256,
                "stores": list(e.stores),
            }
            for e in facts.evidence
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
