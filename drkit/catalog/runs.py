"""Run records: one row per drkit run, opened as ``running`` and closed with its outcome."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from drkit.catalog import totals
from drkit.catalog.database import one_line
from drkit.catalog.models import Run
from drkit.catalog.records import RunKind, RunOutcome, RunRecord, check_choice
from drkit.errors import CatalogError

ORPHANED_RUN_ERROR = "the drkit process running it ended without finishing it (killed or crashed)"


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
    was_running = run.outcome == "running"
    run.outcome = str(outcome)  # a plain word, whatever str subclass came in
    run.finished_at = now
    run.error = one_line(error) if error else None
    if summary is not None:
        run.summary = summary
    if was_running:
        totals.add_run(session, run.plan, run.kind, run.outcome, run.started_at, now, run.summary)


def interrupt_orphaned_runs(
    session: Session,
    plans: Collection[str] | None,
    is_owner_gone: Callable[[str, int, datetime], bool],
    now: datetime,
    *,
    dry_run: bool = False,
) -> list[RunRecord]:
    """Close as ``interrupted`` every ``running`` run (of ``plans``, or all) whose process
    has ended without closing it (killed, crashed, the machine lost power). ``is_owner_gone``
    judges (host, pid, started_at); a run of another host is never judged from here."""
    query = select(Run).where(Run.outcome == "running").order_by(Run.id)
    if plans is not None:
        query = query.where(Run.plan.in_(list(plans)))
    found = []
    for run in session.scalars(query):
        if not is_owner_gone(run.host, run.pid, run.started_at):
            continue
        if not dry_run:
            run.outcome = "interrupted"
            run.finished_at = now
            run.error = ORPHANED_RUN_ERROR
            totals.add_run(session, run.plan, run.kind, run.outcome, run.started_at, now, None)
        found.append(to_run_record(run))
    return found


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
