"""What happened to many plans over a period, for ``drkit report``, in a fixed number of
queries that hand back totals rather than history: runs counted by job and outcome, the gaps
between snapshots that meet each plan's copy policy (the worst, and the worst of each day),
copies per region, the keys used, the drills, and the newest snapshots as evidence.

A year of hourly backups over a thousand plans is millions of rows: they are counted and
compared inside the database, and only a few rows per plan and day come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_args

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from drkit.catalog.drills import to_drill_record
from drkit.catalog.fleet import CHUNK, MEETS_POLICY, PlanPolicy, values_clause
from drkit.catalog.models import Drill
from drkit.catalog.records import DrillRecord, RunKind

#: snapshots listed as evidence per plan (the newest); the report says how many there were
EVIDENCE_LIMIT = 30


@dataclass(frozen=True)
class EvidenceEntry:
    snapshot_id: str
    taken_at: datetime
    status: str
    manifest_sha256: str | None
    stores: tuple[str, ...]


@dataclass
class PeriodFacts:
    """One plan over [since, until)."""

    plan: str
    #: (job, outcome) -> runs started in the period
    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    first_run_at: datetime | None = None
    #: snapshots in the period meeting the copy policy, and the newest one before it
    complete: int = 0
    complete_before: datetime | None = None
    first_complete: datetime | None = None
    last_complete: datetime | None = None
    #: the longest gap between consecutive complete snapshots inside the period
    worst_inner_gap: float | None = None
    #: day (YYYY-MM-DD) -> the longest gap ending that day
    daily_worst_gap: dict[str, float] = field(default_factory=dict)
    copies_per_region: dict[str, int] = field(default_factory=dict)
    key_names: set[str] = field(default_factory=set)
    drills: list[DrillRecord] = field(default_factory=list)
    #: drill runs that ended interrupted without a drill record (the process was killed)
    killed_drills: list[tuple[int, datetime, str, str | None]] = field(default_factory=list)
    #: backup runs that did not end ok: (started_at, outcome, error)
    failed_backups: list[tuple[datetime, str, str | None]] = field(default_factory=list)
    snapshots: int = 0
    evidence: list[EvidenceEntry] = field(default_factory=list)


def read_period_facts(
    session: Session, policies: Sequence[PlanPolicy], since: datetime, until: datetime
) -> dict[str, PeriodFacts]:
    facts = {policy.plan: PeriodFacts(policy.plan) for policy in policies}
    for start in range(0, len(policies), CHUNK):
        chunk = policies[start : start + CHUNK]
        window = _Window(session, chunk, since, until)
        window.count_runs(facts)
        window.first_runs(facts)
        window.complete_gaps(facts)
        window.complete_before(facts)
        window.regions(facts)
        window.keys(facts)
        window.failures(facts)
        window.evidence(facts)
        _drills(session, [p.plan for p in chunk], since, until, facts)
    return facts


class _Window:
    """The statements of one chunk of plans over one period."""

    def __init__(
        self, session: Session, policies: Sequence[PlanPolicy], since: datetime, until: datetime
    ):
        self.session = session
        self.sqlite = session.get_bind().dialect.name == "sqlite"
        head, self.parameters = values_clause(
            ("plan", "min_stores", "min_regions"),
            ((p.plan, p.min_stores, p.min_regions) for p in policies),
        )
        self.parameters |= {"since": _bind(since, self.sqlite), "until": _bind(until, self.sqlite)}
        # the plans' snapshots in the period that meet their copy policy
        self.head = (
            f"{head}, complete AS (SELECT s.id, s.plan, s.taken_at FROM snapshots s "
            "JOIN wanted w ON s.plan = w.plan WHERE s.taken_at >= :since "
            f"AND s.taken_at < :until AND {MEETS_POLICY})"
        )

    def rows(self, statement: str) -> Any:
        return self.session.execute(text(f"{self.head} {statement}"), self.parameters)

    def count_runs(self, facts: dict[str, PeriodFacts]) -> None:
        for plan, kind, outcome, count in self.rows(
            "SELECT r.plan, r.kind, r.outcome, count(*) FROM runs r JOIN wanted w "
            "ON r.plan = w.plan WHERE r.started_at >= :since AND r.started_at < :until "
            "GROUP BY r.plan, r.kind, r.outcome"
        ):
            facts[plan].runs[(kind, outcome)] = int(count)

    def first_runs(self, facts: dict[str, PeriodFacts]) -> None:
        # one column per kind: each the start of the plan's (plan, kind, started_at) index
        firsts = ", ".join(
            f"(SELECT r.started_at FROM runs r WHERE r.plan = w.plan AND r.kind = '{kind}' "
            "ORDER BY r.started_at LIMIT 1)"
            for kind in get_args(RunKind)
        )
        for plan, *starts in self.rows(f"SELECT w.plan, {firsts} FROM wanted w"):
            times = [_read_time(start) for start in starts if start is not None]
            facts[plan].first_run_at = min(times) if times else None

    def complete_gaps(self, facts: dict[str, PeriodFacts]) -> None:
        seconds = "(julianday({0}) * 86400.0)" if self.sqlite else "extract(epoch FROM {0})"
        day = "substr(taken_at, 1, 10)" if self.sqlite else "to_char(taken_at, 'YYYY-MM-DD')"
        gap = (
            f"{seconds.format('taken_at')} - "
            f"{seconds.format('LAG(taken_at) OVER (PARTITION BY plan ORDER BY taken_at)')}"
        )
        if not self.sqlite:
            gap = f"({gap})::float8"
            day = "to_char(taken_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        for plan, day_text, worst, count, first, last in self.rows(
            f"SELECT plan, day, max(gap), count(*), min(taken_at), max(taken_at) FROM "
            f"(SELECT plan, taken_at, {day} AS day, {gap} AS gap FROM complete) AS gaps "
            "GROUP BY plan, day"
        ):
            found = facts[plan]
            found.complete += int(count)
            first_time, last_time = _read_time(first), _read_time(last)
            if found.first_complete is None or first_time < found.first_complete:
                found.first_complete = first_time
            if found.last_complete is None or last_time > found.last_complete:
                found.last_complete = last_time
            if worst is not None:
                found.daily_worst_gap[str(day_text)] = float(worst)
                found.worst_inner_gap = max(found.worst_inner_gap or 0.0, float(worst))

    def complete_before(self, facts: dict[str, PeriodFacts]) -> None:
        for plan, taken in self.rows(
            "SELECT w.plan, (SELECT s.taken_at FROM snapshots s WHERE s.plan = w.plan "
            f"AND s.taken_at < :since AND {MEETS_POLICY} "
            "ORDER BY s.taken_at DESC LIMIT 1) FROM wanted w"
        ):
            facts[plan].complete_before = _read_time(taken) if taken is not None else None

    def regions(self, facts: dict[str, PeriodFacts]) -> None:
        for plan, region, count in self.rows(
            "SELECT k.plan, coalesce(c.region, '?'), count(*) FROM complete k "
            "JOIN copies c ON c.snapshot_id = k.id AND c.status = 'complete' "
            "GROUP BY k.plan, coalesce(c.region, '?')"
        ):
            facts[plan].copies_per_region[str(region)] = int(count)

    def keys(self, facts: dict[str, PeriodFacts]) -> None:
        import json

        for plan, names, count in self.rows(
            "SELECT s.plan, CAST(a.key_names AS TEXT), count(DISTINCT s.id) FROM snapshots s "
            "JOIN wanted w ON s.plan = w.plan JOIN artifacts a ON a.snapshot_id = s.id "
            "WHERE s.taken_at >= :since AND s.taken_at < :until "
            "GROUP BY s.plan, CAST(a.key_names AS TEXT)"
        ):
            facts[plan].key_names.update(json.loads(names or "[]"))
            del count

    def failures(self, facts: dict[str, PeriodFacts]) -> None:
        for plan, kind, run_id, started, outcome, error, recorded in self.rows(
            "SELECT r.plan, r.kind, r.id, r.started_at, r.outcome, r.error, "
            "(SELECT count(*) FROM drills d WHERE d.run_id = r.id AND d.plan = r.plan) "
            "FROM runs r JOIN wanted w ON r.plan = w.plan "
            "WHERE r.started_at >= :since AND r.started_at < :until "
            "AND ((r.kind = 'backup' AND r.outcome NOT IN ('ok', 'running')) "
            "OR (r.kind = 'drill' AND r.outcome = 'interrupted')) ORDER BY r.started_at"
        ):
            when = _read_time(started)
            if kind == "backup":
                facts[plan].failed_backups.append((when, str(outcome), error))
            elif not recorded:
                facts[plan].killed_drills.append((int(run_id), when, str(outcome), error))

    def evidence(self, facts: dict[str, PeriodFacts]) -> None:
        for plan, total in self.rows(
            "SELECT s.plan, count(*) FROM snapshots s JOIN wanted w ON s.plan = w.plan "
            "WHERE s.taken_at >= :since AND s.taken_at < :until GROUP BY s.plan"
        ):
            facts[plan].snapshots = int(total)
        entries: dict[str, tuple[str, datetime, str, str | None]] = {}
        # the newest few of each plan: the time of its EVIDENCE_LIMIT-th newest snapshot (read
        # backwards along the plan's index), then the index range from there; the range starts
        # at that time (not at :since with a filter after it), so the period's older snapshots
        # are never read
        for snapshot_id, plan, taken, status, sha256 in self.rows(
            ", cut AS (SELECT w.plan, coalesce((SELECT n.taken_at FROM snapshots n "
            "WHERE n.plan = w.plan AND n.taken_at >= :since AND n.taken_at < :until "
            f"ORDER BY n.taken_at DESC LIMIT 1 OFFSET {EVIDENCE_LIMIT - 1}), :since) AS after "
            "FROM wanted w) "
            "SELECT s.id, s.plan, s.taken_at, s.status, s.manifest_sha256 FROM cut k "
            "JOIN snapshots s ON s.plan = k.plan WHERE s.taken_at >= k.after "
            "AND s.taken_at < :until"
        ):
            entries[snapshot_id] = (plan, _read_time(taken), str(status), sha256)
        stores: dict[str, list[str]] = {}
        ids = list(entries)
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            marks = ", ".join(f":id_{n}" for n in range(len(batch)))
            for snapshot_id, store in self.session.execute(
                text(
                    f"SELECT snapshot_id, store FROM copies WHERE snapshot_id IN ({marks}) "
                    "AND status = 'complete' ORDER BY store"
                ),
                {f"id_{n}": value for n, value in enumerate(batch)},
            ):
                stores.setdefault(snapshot_id, []).append(store)
        for snapshot_id, (plan, taken, status, sha256) in entries.items():
            facts[plan].evidence.append(
                EvidenceEntry(
                    snapshot_id, taken, status, sha256, tuple(stores.get(snapshot_id, ()))
                )
            )
        for found in facts.values():
            found.evidence.sort(key=lambda entry: entry.taken_at, reverse=True)


def _drills(
    session: Session,
    plans: Sequence[str],
    since: datetime,
    until: datetime,
    facts: dict[str, PeriodFacts],
) -> None:
    rows = session.scalars(
        select(Drill)
        .where(Drill.plan.in_(plans), Drill.started_at >= since, Drill.started_at < until)
        .order_by(Drill.started_at)
    )
    for row in rows:
        facts[row.plan].drills.append(to_drill_record(row))


def _bind(moment: datetime, sqlite: bool) -> Any:
    """A time as the column stores it: SQLite holds naive UTC text, PostgreSQL a timestamptz."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else moment


def _read_time(value: Any) -> datetime:
    """A time from a raw query: SQLite returns the stored text, PostgreSQL a datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
