"""Where many plans stand, in a fixed number of queries whatever the plans' history.

Each figure ``drkit status``, ``metrics`` and ``run --due`` need is "the newest row of a plan
that matches": the newest run of a job, the newest snapshot meeting the copy policy, the newest
drill. Every one is a correlated ``ORDER BY ... LIMIT 1`` subquery over an index that starts
with the plan, evaluated for a list of plans given as a ``VALUES`` common table expression, so
the database reads a few index entries per plan and never the history behind them. Plans are
asked for in chunks, which bounds the bind parameters of one statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from drkit.catalog.drills import to_drill_record
from drkit.catalog.history import table
from drkit.catalog.models import Copy, Drill, Run, Snapshot
from drkit.catalog.records import CopyRecord, DrillRecord, RunRecord, SnapshotRecord

#: plans per statement: ~4 bind parameters each stays far below SQLite's and psycopg's limits
CHUNK = 250
JOBS = ("backup", "prune", "verify", "drill", "restore")


@dataclass(frozen=True)
class PlanPolicy:
    """What a plan asks of its snapshots: complete in ``min_stores`` stores spanning
    ``min_regions`` regions; ``stores`` names the stores whose newest copy is wanted."""

    plan: str
    min_stores: int = 1
    min_regions: int = 1
    stores: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobRuns:
    """A job's newest run (perhaps still running), newest finished one, newest ``ok`` one."""

    last: RunRecord | None = None
    finished: RunRecord | None = None
    succeeded: RunRecord | None = None


@dataclass(frozen=True)
class PlanState:
    """One plan's newest records, read together for many plans."""

    plan: str
    runs: dict[str, JobRuns] = field(default_factory=dict)
    #: the newest snapshot meeting the copy policy, with its copies (not its artifacts)
    newest_complete: SnapshotRecord | None = None
    #: store -> the newest snapshot complete in that store
    newest_in_store: dict[str, SnapshotRecord] = field(default_factory=dict)
    last_drill: DrillRecord | None = None
    last_passed_drill: DrillRecord | None = None
    #: the snapshot the newest passed drill restored, when the catalog still has it
    drill_verified: SnapshotRecord | None = None

    def job(self, kind: str) -> JobRuns:
        return self.runs.get(kind, JobRuns())


def read_plan_states(
    session: Session, policies: Sequence[PlanPolicy], jobs: Sequence[str] = JOBS
) -> dict[str, PlanState]:
    """The state of every plan in ``policies`` (a plan with no history gets an empty one);
    runs of ``jobs`` only (the others read as never run)."""
    states: dict[str, PlanState] = {}
    for start in range(0, len(policies), CHUNK):
        states.update(_read_chunk(session, policies[start : start + CHUNK], jobs))
    return states


def _read_chunk(
    session: Session, policies: Sequence[PlanPolicy], jobs: Sequence[str]
) -> dict[str, PlanState]:
    run_ids = _newest_runs(session, [p.plan for p in policies], jobs)
    complete_ids = _newest_complete(session, policies)
    store_ids = _newest_per_store(session, policies)
    drill_ids = _newest_drills(session, [p.plan for p in policies])
    runs = _runs_by_id(session, {i for ids in run_ids.values() for i in ids if i is not None})
    drills = _drills_by_id(session, {i for ids in drill_ids.values() for i in ids if i is not None})
    verified_ids = {
        plan: drills[passed].snapshot_id
        for plan, (_, passed) in drill_ids.items()
        if passed is not None and passed in drills
    }
    wanted = set(complete_ids.values()) | set(verified_ids.values())
    wanted |= {i for per_store in store_ids.values() for i in per_store.values()}
    snapshots = _snapshots_by_id(session, {i for i in wanted if i is not None})
    states = {}
    for policy in policies:
        plan = policy.plan
        job_runs = {}
        for job in JOBS:
            last, finished, succeeded = run_ids.get((plan, job), (None, None, None))
            job_runs[job] = JobRuns(
                runs.get(last or -1), runs.get(finished or -1), runs.get(succeeded or -1)
            )
        last_drill, passed_drill = drill_ids.get(plan, (None, None))
        complete = complete_ids.get(plan)
        verified = verified_ids.get(plan)
        states[plan] = PlanState(
            plan,
            job_runs,
            snapshots.get(complete) if complete else None,
            {
                store: snapshots[snapshot_id]
                for store, snapshot_id in store_ids.get(plan, {}).items()
                if snapshot_id in snapshots
            },
            drills.get(last_drill or -1),
            drills.get(passed_drill or -1),
            snapshots.get(verified) if verified else None,
        )
    return states


def values_clause(
    names: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> tuple[str, dict[str, Any]]:
    """``WITH wanted(names) AS (VALUES ...)`` for ``rows``, with its bind parameters."""
    parameters: dict[str, Any] = {}
    tuples = []
    for number, row in enumerate(rows):
        keys = []
        for column, value in zip(names, row, strict=True):
            key = f"{column}_{number}"
            parameters[key] = value
            keys.append(f":{key}")
        tuples.append(f"({', '.join(keys)})")
    return f"WITH wanted({', '.join(names)}) AS (VALUES {', '.join(tuples)})", parameters


def _newest_runs(
    session: Session, plans: Sequence[str], jobs: Sequence[str]
) -> dict[tuple[str, str], tuple[int | None, int | None, int | None]]:
    if not jobs:
        return {}
    head, parameters = values_clause(("plan", "kind"), ((p, j) for p in plans for j in jobs))
    newest = (
        "SELECT r.id FROM runs r WHERE r.plan = w.plan AND r.kind = w.kind {extra} "
        "ORDER BY r.started_at DESC LIMIT 1"
    )
    last = newest.format(extra="")
    finished = newest.format(extra="AND r.outcome <> 'running' AND r.finished_at IS NOT NULL")
    succeeded = newest.format(extra="AND r.outcome = 'ok' AND r.finished_at IS NOT NULL")
    statement = f"{head} SELECT w.plan, w.kind, ({last}), ({finished}), ({succeeded}) FROM wanted w"
    return {
        (row[0], row[1]): (row[2], row[3], row[4])
        for row in session.execute(text(statement), parameters)
    }


#: a snapshot ``s`` meets the policy of the plan ``w`` asks about (its counts of complete,
#: undamaged copies and their regions are kept on the row: drkit.catalog.snapshots)
MEETS_POLICY = (
    "s.status = 'complete' AND s.good_copies >= w.min_stores AND s.good_regions >= w.min_regions"
)


def _newest_complete(session: Session, policies: Sequence[PlanPolicy]) -> dict[str, str | None]:
    head, parameters = values_clause(
        ("plan", "min_stores", "min_regions"),
        ((p.plan, p.min_stores, p.min_regions) for p in policies),
    )
    statement = (
        f"{head} SELECT w.plan, (SELECT s.id FROM snapshots s "
        f"WHERE s.plan = w.plan AND {MEETS_POLICY} ORDER BY s.taken_at DESC LIMIT 1) "
        "FROM wanted w"
    )
    return {row[0]: row[1] for row in session.execute(text(statement), parameters)}


def _newest_per_store(
    session: Session, policies: Sequence[PlanPolicy]
) -> dict[str, dict[str, str]]:
    pairs = [(p.plan, store) for p in policies for store in p.stores]
    if not pairs:
        return {}
    head, parameters = values_clause(("plan", "store"), pairs)
    statement = (
        f"{head} SELECT w.plan, w.store, (SELECT s.id FROM snapshots s "
        "JOIN copies c ON c.snapshot_id = s.id AND c.store = w.store AND c.status = 'complete' "
        "WHERE s.plan = w.plan ORDER BY s.taken_at DESC LIMIT 1) FROM wanted w"
    )
    found: dict[str, dict[str, str]] = {}
    for plan, store, snapshot_id in session.execute(text(statement), parameters):
        if snapshot_id is not None:
            found.setdefault(plan, {})[store] = snapshot_id
    return found


def _newest_drills(
    session: Session, plans: Sequence[str]
) -> dict[str, tuple[int | None, int | None]]:
    head, parameters = values_clause(("plan",), ((plan,) for plan in plans))
    newest = (
        "SELECT d.id FROM drills d WHERE d.plan = w.plan {extra} ORDER BY d.started_at DESC LIMIT 1"
    )
    last, passed = newest.format(extra=""), newest.format(extra="AND d.outcome = 'ok'")
    statement = f"{head} SELECT w.plan, ({last}), ({passed}) FROM wanted w"
    return {row[0]: (row[1], row[2]) for row in session.execute(text(statement), parameters)}


# Records are built from plain rows (Core), not ORM objects: for a thousand plans the ORM's
# identity map and instance loading cost more than the queries.


def _runs_by_id(session: Session, ids: set[int]) -> dict[int, RunRecord]:
    if not ids:
        return {}
    rows = session.execute(select(table(Run)).where(table(Run).c.id.in_(ids)))
    return {row.id: RunRecord(**row._mapping) for row in rows}


def _drills_by_id(session: Session, ids: set[int]) -> dict[int, DrillRecord]:
    if not ids:
        return {}
    rows = session.execute(select(table(Drill)).where(table(Drill).c.id.in_(ids)))
    # a row reads like the ORM object to_drill_record expects (attribute per column)
    return {row.id: to_drill_record(cast(Drill, row)) for row in rows}


def _snapshots_by_id(session: Session, ids: set[str]) -> dict[str, SnapshotRecord]:
    """Snapshots with their copies (two queries; artifacts are not read)."""
    if not ids:
        return {}
    copies: dict[str, list[CopyRecord]] = {}
    copy_rows = session.execute(
        select(table(Copy)).where(table(Copy).c.snapshot_id.in_(ids)).order_by("store")
    )
    for row in copy_rows:
        copies.setdefault(row.snapshot_id, []).append(CopyRecord(**row._mapping))
    found = {}
    for row in session.execute(select(table(Snapshot)).where(table(Snapshot).c.id.in_(ids))):
        fields = dict(row._mapping)
        fields["sources"] = tuple(fields["sources"])
        del fields["good_copies"], fields["good_regions"]  # what the copies say, below
        found[row.id] = SnapshotRecord(**fields, copies=tuple(copies.get(row.id, ())))
    return found
