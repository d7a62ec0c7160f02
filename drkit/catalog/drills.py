"""Drill records: the evidence that a snapshot restored, how long each phase took, and what
the checks measured."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from drkit.catalog.database import one_line
from drkit.catalog.models import Drill
from drkit.catalog.records import DrillCheck, DrillInput, DrillOutcome, DrillRecord, check_choice


def record_drill(session: Session, drill: DrillInput) -> int:
    check_choice(DrillOutcome, drill.outcome, "drill outcome")
    row = Drill(
        plan=drill.plan,
        run_id=drill.run_id,
        snapshot_id=drill.snapshot_id,
        store=drill.store,
        sandbox_kinds=list(drill.sandbox_kinds),
        started_at=drill.started_at,
        finished_at=drill.finished_at,
        outcome=str(drill.outcome),
        rto_seconds=drill.rto_seconds,
        rpo_seconds=drill.rpo_seconds,
        phases={phase: float(seconds) for phase, seconds in drill.phases.items()},
        checks=[check_to_json(check) for check in drill.checks],
        error=one_line(drill.error) if drill.error else None,
    )
    session.add(row)
    session.flush()
    return row.id


def check_to_json(check: DrillCheck) -> dict[str, Any]:
    data = asdict(check)
    data["detail"] = one_line(check.detail) if check.detail else ""
    return data


def list_drills(
    session: Session,
    plan: str,
    since: datetime | None,
    outcome: str | None,
    limit: int | None,
) -> list[DrillRecord]:
    query = (
        select(Drill).where(Drill.plan == plan).order_by(Drill.started_at.desc(), Drill.id.desc())
    )
    if since is not None:
        query = query.where(Drill.started_at >= since)
    if outcome is not None:
        query = query.where(Drill.outcome == str(outcome))
    if limit is not None:
        query = query.limit(limit)
    return [to_drill_record(row) for row in session.scalars(query)]


def to_drill_record(row: Drill) -> DrillRecord:
    return DrillRecord(
        id=row.id,
        plan=row.plan,
        run_id=row.run_id,
        snapshot_id=row.snapshot_id,
        store=row.store,
        sandbox_kinds=tuple(row.sandbox_kinds),
        started_at=row.started_at,
        finished_at=row.finished_at,
        outcome=row.outcome,
        rto_seconds=row.rto_seconds,
        rpo_seconds=row.rpo_seconds,
        phases=dict(row.phases),
        checks=tuple(DrillCheck(**check) for check in row.checks),
        error=row.error,
    )
