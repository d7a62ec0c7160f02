"""What `drkit run` does around jobs: dead-man pings, webhook notifications, metrics. Each
hook is best effort: a failing notification or push is logged (one line) and never changes a
job's result or the run's exit code."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence

from drkit.actions.run import JOB_ORDER, JobOutcome
from drkit.catalog import Catalog
from drkit.monitoring import (
    collect_metrics,
    event_for,
    last_outcome,
    monitored,
    notify_events,
    push_metrics,
    write_metrics_file,
)
from drkit.outcome import Outcome
from drkit.plan.schema import Plan

log = logging.getLogger(__name__)
#: outcomes that say nothing about the data's safety: no notification
QUIET_OUTCOMES = (Outcome.SKIPPED, Outcome.LOCKED)


def previous_outcomes(catalog: Catalog, plan: Plan) -> dict[str, str | None]:
    """Each job's last outcome before this run, to tell `recovered` from `ok`."""
    return {job: last_outcome(catalog, plan.name, job) for job in JOB_ORDER}


@contextlib.contextmanager
def plan_monitor(plan: Plan, outcomes: list[JobOutcome]) -> Iterator[None]:
    """Dead-man pings around a plan's jobs: start, then success when every job that ran was
    ok, fail otherwise (an exception included). ``outcomes`` is filled by the block."""
    with monitored(plan, "run") as monitor:
        yield
        ran = [o.outcome for o in outcomes if o.outcome not in QUIET_OUTCOMES]
        monitor.outcome = Outcome.worst(ran)
        monitor.summary = "; ".join(f"{o.job} {o.outcome.value}" for o in outcomes)


def notify_job(plan: Plan, previous: dict[str, str | None], outcome: JobOutcome) -> None:
    """Tell the plan's webhooks about one job's outcome."""
    if outcome.outcome in QUIET_OUTCOMES:
        return
    events = event_for(previous.get(outcome.job), outcome.outcome)
    snapshot_id = outcome.detail.get("snapshot_id") if isinstance(outcome.detail, dict) else None
    payload = {
        "job": outcome.job,
        "outcome": outcome.outcome.value,
        "summary": outcome.reason or outcome.outcome.value,
        "snapshot_id": snapshot_id,
        "errors": [outcome.reason] if outcome.reason else [],
        "host": socket.gethostname(),
    }
    for problem in notify_events(plan, events, payload):
        log.warning("plan %s: notification: %s", plan.name, problem)


def publish_metrics(
    catalog: Catalog, plans: Sequence[Plan], *, metrics_file: str | None, pushgateway: str | None
) -> None:
    """Write or push metrics computed from the catalog, when asked for."""
    if not metrics_file and not pushgateway:
        return
    registry = collect_metrics(catalog, plans)
    problems = []
    if metrics_file:
        problems += write_metrics_file(registry, metrics_file)
    if pushgateway:
        problems += push_metrics(registry, pushgateway)
    for problem in problems:
        log.warning("metrics: %s", problem)
