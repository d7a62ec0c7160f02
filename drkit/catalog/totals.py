"""Run totals: every finished run adds one to its plan, job, outcome and duration bucket, so
``drkit_runs_total`` and the duration histograms are read from a few rows per plan instead
of from the whole run history."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from drkit.catalog.models import RunTotal

#: upper bounds of the duration buckets, in seconds (then +Inf); migration 0003 holds a copy
BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)

_ADD = text(
    "INSERT INTO run_totals (plan, kind, outcome, le, runs, seconds, bytes) "
    "VALUES (:plan, :kind, :outcome, :le, 1, :seconds, :bytes) "
    "ON CONFLICT (plan, kind, outcome, le) DO UPDATE SET runs = run_totals.runs + 1, "
    "seconds = run_totals.seconds + excluded.seconds, bytes = run_totals.bytes + excluded.bytes"
)


def bucket_of(seconds: float) -> float:
    return next((bound for bound in BUCKETS if seconds <= bound), math.inf)


def stored_bytes(summary: dict[str, Any] | None) -> int:
    """Bytes a run wrote to its stores, as its summary says (backups), else 0."""
    value = (summary or {}).get("stored_bytes")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def add_run(
    session: Session,
    plan: str,
    kind: str,
    outcome: str,
    started_at: datetime,
    finished_at: datetime,
    summary: dict[str, Any] | None,
) -> None:
    """Count one finished run (an atomic increment: concurrent runners never lose one)."""
    seconds = max(0.0, (finished_at - started_at).total_seconds())
    session.execute(
        _ADD,
        {
            "plan": plan,
            "kind": kind,
            "outcome": str(outcome),
            "le": bucket_of(seconds),
            "seconds": seconds,
            "bytes": stored_bytes(summary),
        },
    )


@dataclass
class JobTotals:
    """One plan's job ending in one outcome: how many runs, their seconds and bytes, and
    how many took at most each bucket's seconds (cumulative, as Prometheus counts)."""

    runs: int = 0
    seconds: float = 0.0
    bytes: int = 0
    buckets: dict[float, int] = field(default_factory=dict)


def read_totals(session: Session, plans: Sequence[str]) -> dict[tuple[str, str, str], JobTotals]:
    """(plan, job, outcome) -> totals, for ``plans``."""
    found: dict[tuple[str, str, str], JobTotals] = {}
    for start in range(0, len(plans), 500):
        chunk = list(plans[start : start + 500])
        rows = session.scalars(
            select(RunTotal).where(RunTotal.plan.in_(chunk)).order_by(RunTotal.le)
        )
        for row in rows:
            totals = found.setdefault((row.plan, row.kind, row.outcome), JobTotals())
            totals.runs += row.runs
            totals.seconds += row.seconds
            totals.bytes += row.bytes
            totals.buckets[row.le] = row.runs
    for totals in found.values():
        running = 0
        for bound in [*BUCKETS, math.inf]:
            running += totals.buckets.get(bound, 0)
            totals.buckets[bound] = running
    return found
