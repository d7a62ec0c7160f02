"""`drkit run`: the job runner for cron and Kubernetes CronJobs."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import click

from drkit.actions.run import (
    DEFAULT_TIMEOUTS,
    JOB_ORDER,
    OUTCOME_EXIT,
    JobOutcome,
    choose_jobs,
    last_run_times,
    run_plan,
    worst_outcome,
)
from drkit.cli.context import Context, echo_json, json_option
from drkit.errors import UsageError
from drkit.plan.durations import parse_duration
from drkit.plan.loader import find_plan_files, load_plan


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


def _parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--now {text!r}: expected an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command(
    "run",
    epilog="""\b
Examples:
  */5 * * * * drkit run --due /etc/drkit/plans          # one crontab line for a whole host
  drkit run plans/payments.yaml --drill                  # backup, prune, then a drill
  drkit run --job drill plans/payments.yaml              # one job now (Kubernetes CronJobs)
  drkit run --due --dry-run --now 2026-11-30T03:30:00Z plans/   # what would run then
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
@click.option("--now", "now_text", metavar="TIME", help="Decide what is due as of TIME (ISO 8601).")
@click.option(
    "--metrics-file", type=click.Path(), help="Write Prometheus textfile metrics here afterwards."
)
@click.option(
    "--pushgateway", metavar="URL", help="Push Prometheus metrics to this gateway afterwards."
)
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
    as_json: bool,
) -> int:
    """Run the jobs of every plan (files or folders of *.yaml), one lock per plan."""
    from drkit.actions.resources import open_resources
    from drkit.cli.hooks import notify_job, plan_monitor, previous_outcomes, publish_metrics

    if due and jobs:
        raise UsageError("--due and --job exclude each other")
    limits = _parse_timeouts(timeouts)
    lease_seconds = parse_duration(lease).total_seconds()
    now = _parse_now(now_text)
    outcomes: list[JobOutcome] = []
    loaded = [load_plan(path) for path in find_plan_files(plans)]
    with context.catalog() as catalog:
        for plan in loaded:
            resources = open_resources(plan, catalog)
            decisions = choose_jobs(
                plan, last_run_times(resources), now, due=due, jobs=jobs, with_drill=with_drill
            )
            if dry_run:
                outcomes += [
                    JobOutcome(plan.name, d.job, "would run" if d.due else "skipped", d.reason)
                    for d in decisions
                ]
                continue
            if not any(decision.due for decision in decisions):
                outcomes += run_plan(
                    resources, decisions, lease_seconds=lease_seconds, timeouts=limits
                )
                continue
            previous = previous_outcomes(catalog, plan)
            plan_outcomes: list[JobOutcome] = []
            with plan_monitor(plan, plan_outcomes):
                plan_outcomes += run_plan(
                    resources,
                    decisions,
                    lease_seconds=lease_seconds,
                    timeouts=limits,
                    on_job=functools.partial(notify_job, plan, previous),
                )
            outcomes += plan_outcomes
        if not dry_run:
            publish_metrics(catalog, loaded, metrics_file=metrics_file, pushgateway=pushgateway)
    if as_json:
        echo_json([outcome.to_json() for outcome in outcomes])
    else:
        for outcome in outcomes:
            reason = f": {outcome.reason}" if outcome.reason else ""
            click.echo(f"{outcome.plan} {outcome.job}: {outcome.outcome}{reason}")
    if dry_run:
        return 0
    return int(OUTCOME_EXIT[worst_outcome([o.outcome for o in outcomes])])
