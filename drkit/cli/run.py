"""`drkit run`: the job runner for cron and Kubernetes CronJobs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from drkit.actions.run import (
    DEFAULT_TIMEOUTS,
    JOB_ORDER,
    JobDecision,
    JobOutcome,
    choose_jobs,
    fleet_run_times,
    last_run_times,
    run_plan,
)
from drkit.cli.cleanup import sweep_quietly
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.moments import describe_moment, parse_moment
from drkit.cli.outcomes import exit_code
from drkit.cli.resources import wait_for_lock_option
from drkit.cli.workers import run_plans_in_children
from drkit.errors import UsageError
from drkit.leases import private_scratch
from drkit.outcome import Outcome
from drkit.plan.durations import parse_duration
from drkit.plan.loader import find_plan_files, load_plan

if TYPE_CHECKING:
    from drkit.actions.resources import Resources


def _parse_timeouts(values: tuple[str, ...]) -> dict[str, float]:
    timeouts = dict(DEFAULT_TIMEOUTS)
    for value in values:
        job, sep, duration = value.partition("=")
        if not sep or job not in JOB_ORDER:
            raise UsageError(f"--timeout {value!r}: expected JOB=DURATION, e.g. backup=2h")
        try:
            timeouts[job] = parse_duration(duration).total_seconds()
        except ValueError as error:
            raise UsageError(f"--timeout {value!r}: {error}") from None
    return timeouts


def _parse_now(text: str | None, *, quiet: bool) -> datetime:
    if text is None:
        return datetime.now(UTC)
    moment = parse_moment(text, option="--now")
    if not quiet:
        click.echo(f"--now {text}: {describe_moment(moment)}", err=True)
    return moment


def _child_options(
    due: bool,
    jobs: tuple[str, ...],
    with_drill: bool,
    timeouts: tuple[str, ...],
    lease: str,
    now_text: str | None,
    wait_for_lock: str | None,
) -> list[str]:
    """This run's options for a child running one plan (metrics are the parent's)."""
    options = ["--due"] if due else [part for job in jobs for part in ("--job", job)]
    options += ["--drill"] if with_drill else []
    options += [part for value in timeouts for part in ("--timeout", value)]
    options += ["--lease", lease]
    options += ["--now", now_text] if now_text else []
    options += ["--wait-for-lock", wait_for_lock] if wait_for_lock else []
    return options


def _decide_again(
    decide: Callable[[dict[str, datetime | None]], list[JobDecision]], resources: Resources
) -> list[JobDecision]:
    """The due decision made anew under the plan's lock, from the catalog as it is now."""
    return decide(last_run_times(resources))


@click.command(
    "run",
    epilog="""\b
Examples:
  */5 * * * * drkit run --due /etc/drkit/plans          # one crontab line for a whole host
  drkit run plans/payments.yaml --drill                  # backup, prune, then a drill
  drkit run --job drill plans/payments.yaml              # one job now (Kubernetes CronJobs)
  drkit run --due --dry-run --now 2026-11-30T03:30:00Z plans/   # what would run then
  drkit run --due --workers 4 /etc/drkit/plans           # a group of plans, 4 at a time
Exit: the worst outcome: 0 ok, 3 degraded, 4 objective breached, 5 locked, 1 failed.""",
)
@click.argument("plans", nargs=-1, required=True, type=click.Path())
@click.option("--due", is_flag=True, help="Run only what each plan's schedule makes due.")
@click.option(
    "--job",
    "jobs",
    multiple=True,
    type=click.Choice(JOB_ORDER),
    help="Run this job now (repeatable).",
)
@click.option(
    "--drill",
    "with_drill",
    is_flag=True,
    help="Without --due/--job: add a drill after backup and prune.",
)
@click.option(
    "--timeout",
    "timeouts",
    multiple=True,
    metavar="JOB=DURATION",
    help="Per-job time limit, e.g. backup=2h (defaults: 6h; prune 1h).",
)
@click.option(
    "--lease", default="5m", show_default=True, help="Lock lease; renewed while jobs run."
)
@click.option("--dry-run", is_flag=True, help="Say what would run and why; run nothing.")
@click.option(
    "--now",
    "now_text",
    metavar="TIME",
    help="Decide what is due as of TIME (ISO 8601; without a zone: local time).",
)
@click.option(
    "--metrics-file", type=click.Path(), help="Write Prometheus textfile metrics here afterwards."
)
@click.option(
    "--pushgateway", metavar="URL", help="Push Prometheus metrics to this gateway afterwards."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Run up to N plans at once, each in a child drkit (one catalog connection each).",
)
@wait_for_lock_option
@json_option
@click.pass_obj
def run_command(
    context: Context,
    plans: tuple[str, ...],
    due: bool,
    jobs: tuple[str, ...],
    with_drill: bool,
    timeouts: tuple[str, ...],
    lease: str,
    dry_run: bool,
    now_text: str | None,
    metrics_file: str | None,
    pushgateway: str | None,
    wait_for_lock: str | None,
    workers: int,
    as_json: bool,
) -> int:
    """Run the jobs of every plan (files or folders of *.yaml), one lock per plan."""
    from drkit.actions.resources import open_resources
    from drkit.cli.hooks import notify_job, plan_monitor, previous_outcomes, publish_metrics

    if due and jobs:
        raise UsageError("--due and --job exclude each other")
    limits = _parse_timeouts(timeouts)
    lease_seconds = parse_duration(lease).total_seconds()
    lock_wait = parse_duration(wait_for_lock).total_seconds() if wait_for_lock else 0.0
    now = _parse_now(now_text, quiet=context.quiet)
    outcomes: list[JobOutcome] = []
    files = find_plan_files(plans)
    loaded = [load_plan(path) for path in files]
    in_children: list[tuple[str, Path]] = []
    with context.catalog() as catalog, private_scratch():
        if not dry_run:
            sweep_quietly({plan.name: plan for plan in loaded}, catalog)
        # a first look for every plan at once; what is due is decided again under each lock
        last_runs = fleet_run_times(catalog, [plan.name for plan in loaded])
        for path, plan in zip(files, loaded, strict=True):
            resources = open_resources(plan, catalog)
            decide = functools.partial(
                choose_jobs, plan, now=now, due=due, jobs=jobs, with_drill=with_drill
            )
            decisions = decide(last_runs[plan.name])
            if dry_run:
                outcomes += [
                    JobOutcome(plan.name, d.job, Outcome.SKIPPED, d.reason, would_run=d.due)
                    for d in decisions
                ]
                continue
            if workers > 1 and any(decision.due for decision in decisions):
                in_children.append((plan.name, path))
                continue
            if not any(decision.due for decision in decisions):
                outcomes += run_plan(
                    resources,
                    decisions,
                    lease_seconds=lease_seconds,
                    timeouts=limits,
                    lock_wait_seconds=lock_wait,
                )
                continue
            again = functools.partial(_decide_again, decide, resources) if due else None
            previous = previous_outcomes(catalog, plan)
            plan_outcomes: list[JobOutcome] = []
            with plan_monitor(plan, plan_outcomes):
                plan_outcomes += run_plan(
                    resources,
                    decisions,
                    lease_seconds=lease_seconds,
                    timeouts=limits,
                    on_job=functools.partial(notify_job, plan, previous),
                    decide_again=again,
                    locked_is_skipped=due,
                    lock_wait_seconds=lock_wait,
                )
            outcomes += plan_outcomes
        if in_children:
            options = _child_options(
                due, jobs, with_drill, timeouts, lease, now_text, wait_for_lock
            )
            outcomes += run_plans_in_children(context, options, in_children, workers)
        if not dry_run:
            publish_metrics(catalog, loaded, metrics_file=metrics_file, pushgateway=pushgateway)
    if as_json:
        echo_json([outcome.to_json() for outcome in outcomes])
    else:
        for outcome in outcomes:
            reason = f": {outcome.reason}" if outcome.reason else ""
            click.echo(f"{outcome.plan} {outcome.job}: {outcome.label}{reason}")
    if dry_run:
        return 0
    return exit_code(o.outcome for o in outcomes)
