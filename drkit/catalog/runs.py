"""Run records: one row per drkit run, opened as ``running`` and closed with its outcome."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from drkit.catalog.database import one_line
from drkit.catalog.models import Run
from drkit.catalog.records import RunKind, RunOutcome, RunRecord, check_choice
from drkit.errors import CatalogError


def start_run(session: Session, plan: str, kind: str, now: datetime) -> int:
    check_choice(RunKind, kind, "run kind")
    run = Run(
        plan=plan,
        kind=kind,
        started_at=now,
        outcome="running",
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    session.add(run)
    session.flush()
    return run.id


def finish_run(
    session: Session,
    run_id: int,
    outcome: str,
    now: datetime,
    *,
    error: str | None,
    summary: dict[str, Any] | None,
) -> None:
    check_choice(RunOutcome, outcome, "run outcome")
    run = session.get(Run, run_id)
    if run is None:
        raise CatalogError(f"run {run_id} is not in the catalog")
    run.outcome = outcome
    run.finished_at = now
    run.error = one_line(error) if error else None
    if summary is not None:
        run.summary = summary


def list_runs(
    session: Session, plan: str | None, kind: str | None, since: datetime | None, limit: int | None
) -> list[RunRecord]:
    query = select(Run).order_by(Run.started_at.desc(), Run.id.desc())
    if plan is not None:
        query = query.where(Run.plan == plan)
    if kind is not None:
        query = query.where(Run.kind == kind)
    if since is not None:
        query = query.where(Run.started_at >= since)
    if limit is not None:
        query = query.limit(limit)
    return [to_run_record(run) for run in session.scalars(query)]


def to_run_record(run: Run) -> RunRecord:
    return RunRecord(
        id=run.id,
        plan=run.plan,
        kind=run.kind,
        started_at=run.started_at,
        finished_at=run.finished_at,
        outcome=run.outcome,
        error=run.error,
        summary=run.summary,
        host=run.host,
        pid=run.pid,
    )
