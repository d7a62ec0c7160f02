"""`drkit run`: the job runner for cron and Kubernetes.

For each plan it decides which jobs to run (everything due by the plan's schedule with
``--due``; a named job with ``--job``; otherwise backup then prune), takes the plan's lock in
the catalog (a lease renewed by a heartbeat, taken over when a crashed runner's lease expires),
runs the jobs in a sensible order with a timeout each, and reports the worst outcome.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING

from drkit.actions.resources import Resources
from drkit.cron import croniter
from drkit.errors import DrkitError, ExitCode, LockHeldError, describe_failure
from drkit.outcome import Outcome
from drkit.plan.schema import Plan

if TYPE_CHECKING:
    from drkit.catalog import Catalog, LockLease

log = logging.getLogger(__name__)

JOB_ORDER = ("backup", "prune", "verify", "drill")
DEFAULT_TIMEOUTS = {
    "backup": 6 * 3600.0,
    "prune": 3600.0,
    "verify": 6 * 3600.0,
    "drill": 6 * 3600.0,
}


class JobTimeout(DrkitError):
    exit_code = ExitCode.FAILED
    default_hint = "raise the job's timeout with --timeout, or look at what made it slow"


@dataclass
class JobDecision:
    job: str
    due: bool
    reason: str


@dataclass
class JobOutcome:
    plan: str
    job: str
    outcome: Outcome
    reason: str = ""
    seconds: float = 0.0
    detail: dict[str, object] = field(default_factory=dict)
    #: set by a dry run (``--dry-run``): the job would run now; nothing ran
    would_run: bool = False

    @property
    def label(self) -> str:
        """The outcome for people and JSON: ``would run`` in a dry run."""
        return "would run" if self.would_run else self.outcome.value

    def to_json(self) -> dict[str, object]:
        return {
            "plan": self.plan,
            "job": self.job,
            "outcome": self.label,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


@functools.lru_cache(maxsize=256)
def previous_fire(expression: str, now: datetime) -> datetime:
    """When the cron schedule last fired at or before ``now`` (once per schedule and moment:
    a fleet's plans share a few schedules, and croniter costs more than the rest)."""
    fired: datetime = croniter(expression, now).get_prev(datetime)
    return fired


@functools.lru_cache(maxsize=256)
def next_fire(expression: str, now: datetime) -> datetime:
    following: datetime = croniter(expression, now).get_next(datetime)
    return following


def decide_due(
    plan: Plan, last_runs: dict[str, datetime | None], now: datetime
) -> list[JobDecision]:
    """Which scheduled jobs are due at ``now``: a job is due when its cron schedule fired
    after the job last started (or it never ran). Prune without a schedule follows backup."""
    decisions = []
    for job in JOB_ORDER:
        expression = getattr(plan.schedule, job)
        if expression is None:
            if job == "prune":
                continue  # decided after backup below
            decisions.append(JobDecision(job, False, "no schedule"))
            continue
        fired = previous_fire(expression, now)
        last = last_runs.get(job)
        if last is None:
            decisions.append(JobDecision(job, True, f"never ran (schedule {expression!r})"))
        elif last < fired:
            decisions.append(
                JobDecision(
                    job, True, f"scheduled at {fired.isoformat()}, last ran {last.isoformat()}"
                )
            )
        else:
            following = next_fire(expression, now)
            decisions.append(
                JobDecision(job, False, f"ran {last.isoformat()}; next at {following.isoformat()}")
            )
    if plan.schedule.prune is None:
        backup_due = any(d.job == "backup" and d.due for d in decisions)
        decisions.append(
            JobDecision(
                "prune",
                backup_due,
                "follows the backup" if backup_due else "follows the backup (not due)",
            )
        )
    return sorted(decisions, key=lambda d: JOB_ORDER.index(d.job))


def choose_jobs(
    plan: Plan,
    last_runs: dict[str, datetime | None],
    now: datetime,
    *,
    due: bool,
    jobs: Sequence[str],
    with_drill: bool,
) -> list[JobDecision]:
    if jobs:
        return [
            JobDecision(job, True, "asked for") for job in sorted(set(jobs), key=JOB_ORDER.index)
        ]
    if due:
        return decide_due(plan, last_runs, now)
    chosen = [JobDecision("backup", True, "default"), JobDecision("prune", True, "after backup")]
    if with_drill:
        chosen.append(JobDecision("drill", True, "--drill"))
    return chosen


@contextlib.contextmanager
def time_limit(seconds: float | None, job: str) -> Iterator[None]:
    """Raise JobTimeout in the main thread after ``seconds`` (SIGALRM); the job's context
    managers then clean up (sandboxes torn down, uploads aborted) as on Ctrl-C."""
    if not seconds or seconds <= 0:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise JobTimeout(f"{job} did not finish within {seconds:.0f}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_job(resources: Resources, job: str) -> JobOutcome:
    """Run one job of one plan and translate its result into an outcome."""
    plan = resources.plan.name
    if job == "backup":
        from drkit.actions.backup import backup

        result = backup(resources)
        return JobOutcome(plan, job, result.outcome, result.error or "", detail=result.to_json())
    if job == "drill":
        from drkit.actions.drill import drill

        drills = drill(resources)
        outcome = Outcome.worst(d.outcome for d in drills)
        reason = "; ".join(filter(None, [d.error or "; ".join(d.breaches) for d in drills]))
        return JobOutcome(
            plan, job, outcome, reason, detail={"drills": [d.to_json() for d in drills]}
        )
    if job == "verify":
        from drkit.actions.verify import verify

        checked = verify(resources)
        failures = [f"{c.store}: {c.error}" for c in checked.checks if not c.ok]
        return JobOutcome(
            plan,
            job,
            Outcome.OK if checked.ok else Outcome.FAILED,
            "; ".join(failures + checked.lagging),
            detail=checked.to_json(),
        )
    if job == "prune":
        from drkit.actions.prune import prune

        pruned = prune(resources)
        return JobOutcome(plan, job, pruned.outcome, pruned.error or "", detail=pruned.to_json())
    raise ValueError(f"unknown job {job!r}")


def run_plan(
    resources: Resources,
    decisions: Sequence[JobDecision],
    *,
    lease_seconds: float,
    timeouts: dict[str, float],
    on_job: Callable[[JobOutcome], None] | None = None,
    decide_again: Callable[[], Sequence[JobDecision]] | None = None,
    locked_is_skipped: bool = False,
    lock_wait_seconds: float = 0,
) -> list[JobOutcome]:
    """Run the due jobs of one plan under its lock; a failed backup skips the jobs after it.

    ``decide_again`` makes the decision anew once the lock is held (``--due``: what another
    runner did meanwhile is then seen, so no job runs twice in one window). A lease lost
    between jobs stops the rest: they end ``locked``. With ``locked_is_skipped``, a plan
    another runner holds is skipped (it is doing the work) instead of reported ``locked``.
    """
    plan = resources.plan.name
    if not any(d.due for d in decisions):
        return _skipped(plan, decisions)
    catalog = resources.catalog
    assert catalog is not None
    try:
        lock = catalog.hold_lock(plan, lease_seconds, wait_seconds=lock_wait_seconds)
        lease = lock.__enter__()
    except LockHeldError as error:
        if locked_is_skipped:
            log.info("plan %s: skipped: %s", plan, error.message)
            reason = f"another runner is on it: {error.message}"
            return [JobOutcome(plan, d.job, Outcome.SKIPPED, reason) for d in decisions]
        log.error("plan %s: %s", plan, error.message)
        due = [d for d in decisions if d.due]
        return [
            *_skipped(plan, decisions),
            *(JobOutcome(plan, d.job, Outcome.LOCKED, error.message) for d in due),
        ]
    try:
        if lease.info.took_over_from:
            log.warning(
                "plan %s: took over the lock of %s, whose lease had expired",
                plan,
                lease.info.took_over_from,
            )
        if decide_again is not None:
            decisions = decide_again()
        outcomes = _skipped(plan, decisions)
        return outcomes + _run_due(
            resources, [d for d in decisions if d.due], lease, timeouts=timeouts, on_job=on_job
        )
    finally:
        lock.__exit__(None, None, None)


def _skipped(plan: str, decisions: Sequence[JobDecision]) -> list[JobOutcome]:
    outcomes = []
    for decision in decisions:
        if not decision.due:
            log.info("plan %s: %s skipped: %s", plan, decision.job, decision.reason)
            outcomes.append(JobOutcome(plan, decision.job, Outcome.SKIPPED, decision.reason))
    return outcomes


def _run_due(
    resources: Resources,
    due: Sequence[JobDecision],
    lease: LockLease,
    *,
    timeouts: dict[str, float],
    on_job: Callable[[JobOutcome], None] | None,
) -> list[JobOutcome]:
    plan = resources.plan.name
    outcomes: list[JobOutcome] = []
    backup_failed = False
    for index, decision in enumerate(due):
        if backup_failed and decision.job in ("prune", "drill"):
            outcomes.append(JobOutcome(plan, decision.job, Outcome.SKIPPED, "the backup failed"))
            continue
        try:
            lease.confirm()
        except LockHeldError as error:
            log.error("plan %s: stopping before %s: %s", plan, decision.job, error.message)
            return outcomes + [
                JobOutcome(plan, rest.job, Outcome.LOCKED, error.message) for rest in due[index:]
            ]
        outcome = _run_one(resources, decision, timeouts)
        backup_failed = backup_failed or (
            decision.job == "backup" and outcome.outcome is Outcome.FAILED
        )
        outcomes.append(outcome)
        if on_job is not None:
            on_job(outcome)
    return outcomes


def _run_one(resources: Resources, decision: JobDecision, timeouts: dict[str, float]) -> JobOutcome:
    plan = resources.plan.name
    log.info("plan %s: running %s (%s)", plan, decision.job, decision.reason)
    started = time.monotonic()
    try:
        with time_limit(timeouts.get(decision.job), decision.job):
            outcome = run_job(resources, decision.job)
    except DrkitError as error:
        outcome = JobOutcome(plan, decision.job, Outcome.FAILED, describe_failure(error))
    outcome.seconds = time.monotonic() - started
    log.info(
        "plan %s: %s %s in %.1fs%s",
        plan,
        decision.job,
        outcome.outcome.value,
        outcome.seconds,
        f": {outcome.reason}" if outcome.reason else "",
    )
    return outcome


def last_run_times(resources: Resources) -> dict[str, datetime | None]:
    """When each job last started for this plan, from the catalog."""
    catalog = resources.catalog
    assert catalog is not None
    return fleet_run_times(catalog, [resources.plan.name])[resources.plan.name]


def fleet_run_times(
    catalog: Catalog, plans: Sequence[str]
) -> dict[str, dict[str, datetime | None]]:
    """When each job of each plan last started, in a few queries for all the plans."""
    from drkit.catalog import PlanPolicy

    states = catalog.plan_states([PlanPolicy(plan) for plan in plans], jobs=JOB_ORDER)
    times: dict[str, dict[str, datetime | None]] = {}
    for plan in plans:
        runs = {job: states[plan].job(job).last for job in JOB_ORDER}
        times[plan] = {job: run.started_at if run else None for job, run in runs.items()}
    return times


def now_utc() -> datetime:
    return datetime.now(UTC)
