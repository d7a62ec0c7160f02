"""`drkit status` and `drkit report`: figures from the catalog for people, monitors, auditors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from drkit.cli.context import Context, echo_json, json_option
from drkit.errors import ExitCode
from drkit.plan.durations import humanize_seconds, parse_duration
from drkit.plan.loader import find_plan_files, load_plan
from drkit.report.status import PlanStatus, plan_status


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{humanize_seconds(seconds)} ago"


def render_status(status: PlanStatus) -> str:
    backup = status.last_backup
    last = (
        "no backup yet"
        if backup is None
        else (
            f"last backup {_age((status.now - backup.started_at).total_seconds())} {backup.outcome}"
        )
    )
    copies = ", ".join(f"{c['store']}({c['region']})" for c in status.copies) or "no complete copy"
    rpo_objective = f"/{humanize_seconds(status.rpo_objective)}" if status.rpo_objective else ""
    rpo = "–" if status.rpo_seconds is None else humanize_seconds(status.rpo_seconds)
    verified = (
        "–"
        if status.verified_rpo_seconds is None
        else humanize_seconds(status.verified_rpo_seconds)
    )
    drill = status.last_drill
    drill_text = (
        "no drill yet"
        if drill is None
        else (
            f"last drill {drill.outcome} RTO {humanize_seconds(drill.rto_seconds or 0)}"
            + (f"/{humanize_seconds(status.rto_objective)}" if status.rto_objective else "")
        )
    )
    verdict = "BREACHED: " + "; ".join(status.breaches) if status.breached else "ok"
    return (
        f"{status.plan}: {last}; copies {copies}; RPO {rpo}{rpo_objective} "
        f"(drill-verified {verified}); {drill_text} -> {verdict}"
    )


@click.command(
    "status",
    epilog="""\b
Examples:
  drkit status plans/
  drkit status plans/payments.yaml --json     # exit 4 when an objective is breached
Exit: 0 within objectives, 4 an objective is breached (usable as a monitoring check).""",
)
@click.argument("plans", nargs=-1, required=True, type=click.Path())
@json_option
@click.pass_obj
def status_command(context: Context, plans: tuple[str, ...], as_json: bool) -> int:
    """One line per plan: last backup, copies, RPO now and drill-verified RPO, last drill RTO."""
    with context.catalog() as catalog:
        statuses = [plan_status(catalog, load_plan(path)) for path in find_plan_files(plans)]
    if as_json:
        echo_json([status.to_json() for status in statuses])
    else:
        for status in statuses:
            click.echo(render_status(status))
    breached = any(status.breached for status in statuses)
    return int(ExitCode.OBJECTIVE_BREACHED if breached else ExitCode.OK)


@click.command(
    "report",
    epilog="""\b
Examples:
  drkit report plans/ --since 90d --format html -o dr-report.html
  drkit report plans/payments.yaml --since 30d --format md""",
)
@click.argument("plans", nargs=-1, required=True, type=click.Path())
@click.option("--since", default="90d", show_default=True, help="Period to cover (a duration).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "md", "html"]),
    default="md",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(), help="Write to this file (default stdout).")
@click.pass_obj
def report_command(
    context: Context, plans: tuple[str, ...], since: str, output_format: str, output: str | None
) -> int:
    """A compliance report per plan: backups due/taken/complete, copies per region, keys,
    drills, RTO p50/p95/max and worst RPO against the objectives, failures, evidence."""
    import json

    from drkit.report.compliance import plan_report
    from drkit.report.render import render_html, render_markdown

    try:
        start = datetime.now(UTC) - parse_duration(since)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    with context.catalog() as catalog:
        reports = [plan_report(catalog, load_plan(path), start) for path in find_plan_files(plans)]
    if output_format == "json":
        text = json.dumps(reports, indent=2, default=str) + "\n"
    elif output_format == "md":
        text = render_markdown(reports)
    else:
        text = render_html(reports)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
    return 0
