"""`drkit run`: the job runner for cron and Kubernetes.

For each plan it decides which jobs to run (everything due by the plan's schedule with
``--due``; a named job with ``--job``; otherwise backup then prune), takes the plan's lock in
the catalog (a lease renewed by a heartbeat, taken over when a crashed runner's lease expires),
runs the jobs in a sensible order with a timeout each, and reports the worst outcome.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

from croniter import croniter

from drkit.actions.fanout import describe_failure
from drkit.actions.resources import Resources
from drkit.errors import DrkitError, ExitCode, LockHeldError
from drkit.plan.schema import Plan

log = logging.getLogger(__name__)

JOB_ORDER = ("backup", "prune", "verify", "drill")
#: worst first: the exit code of a run over many plans and jobs is its worst outcome's
SEVERITY = ("failed", "locked", "breached", "degraded", "ok", "skipped")
OUTCOME_EXIT = {
    "ok": ExitCode.OK,
    "skipped": ExitCode.OK,
    "degraded": ExitCode.DEGRADED,
    "breached": ExitCode.OBJECTIVE_BREACHED,
    "locked": ExitCode.LOCKED,
    "failed": ExitCode.FAILED,
}
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
    outcome: str  # ok | degraded | breached | failed | locked | skipped
    reason: str = ""
    seconds: float = 0.0
    detail: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "plan": self.plan,
            "job": self.job,
            "outcome": self.outcome,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


def worst_outcome(outcomes: Sequence[str]) -> str:
    if not outcomes:
        return "ok"
    return min(outcomes, key=SEVERITY.index)


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
        fired = croniter(expression, now).get_prev(datetime)
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
            following = croniter(expression, now).get_next(datetime)
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
        return JobOutcome(
            plan, job, result.outcome.value, result.error or "", detail=result.to_json()
        )
    if job == "drill":
        from drkit.actions.drill import drill

        drills = drill(resources)
        outcome = worst_outcome(
            [{"passed": "ok", "breached": "breached"}.get(d.outcome, "failed") for d in drills]
        )
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
            "ok" if checked.ok else "failed",
            "; ".join(failures),
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
) -> list[JobOutcome]:
    """Run the due jobs of one plan under its lock; a failed backup skips the jobs after it."""
    plan = resources.plan.name
    outcomes: list[JobOutcome] = []
    for decision in decisions:
        if not decision.due:
            log.info("plan %s: %s skipped: %s", plan, decision.job, decision.reason)
            outcomes.append(JobOutcome(plan, decision.job, "skipped", decision.reason))
    due = [d for d in decisions if d.due]
    if not due:
        return outcomes
    catalog = resources.catalog
    assert catalog is not None
    try:
        lock = catalog.hold_lock(plan, lease_seconds)
        lease = lock.__enter__()
    except LockHeldError as error:
        log.error("plan %s: %s", plan, error.message)
        return [*outcomes, *(JobOutcome(plan, d.job, "locked", error.message) for d in due)]
    try:
        if lease.info.took_over_from:
            log.warning(
                "plan %s: took over the lock of %s, whose lease had expired",
                plan,
                lease.info.took_over_from,
            )
        backup_failed = False
        for decision in due:
            if backup_failed and decision.job in ("prune", "drill"):
                outcomes.append(JobOutcome(plan, decision.job, "skipped", "the backup failed"))
                continue
            log.info("plan %s: running %s (%s)", plan, decision.job, decision.reason)
            started = time.monotonic()
            try:
                with time_limit(timeouts.get(decision.job), decision.job):
                    outcome = run_job(resources, decision.job)
            except DrkitError as error:
                outcome = JobOutcome(plan, decision.job, "failed", describe_failure(error))
            outcome.seconds = time.monotonic() - started
            backup_failed = backup_failed or (
                decision.job == "backup" and outcome.outcome == "failed"
            )
            log.info(
                "plan %s: %s %s in %.1fs%s",
                plan,
                decision.job,
                outcome.outcome,
                outcome.seconds,
                f": {outcome.reason}" if outcome.reason else "",
            )
            outcomes.append(outcome)
            if on_job is not None:
                on_job(outcome)
    finally:
        lock.__exit__(None, None, None)
    return outcomes


def last_run_times(resources: Resources) -> dict[str, datetime | None]:
    """When each job last started for this plan, from the catalog."""
    catalog = resources.catalog
    assert catalog is not None
    times: dict[str, datetime | None] = {}
    for job in JOB_ORDER:
        record = catalog.last_run(resources.plan.name, job)
        times[job] = record.started_at if record is not None else None
    return times


def now_utc() -> datetime:
    return datetime.now(UTC)
