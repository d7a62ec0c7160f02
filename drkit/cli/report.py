"""`drkit status` and `drkit report`: figures from the catalog for people, monitors, auditors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from drkit.cli.cleanup import sweep_quietly
from drkit.cli.context import Context, echo_json, json_option
from drkit.errors import ExitCode
from drkit.plan.durations import humanize_seconds, parse_duration
from drkit.plan.loader import find_plan_files, load_plan
from drkit.report.status import PlanStatus, plan_statuses


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
    line = (
        f"{status.plan}: {last}; copies {copies}; RPO {rpo}{rpo_objective} "
        f"(drill-verified {verified}); {drill_text} -> {verdict}"
    )
    return "\n".join([line, *render_windows(status)])


def render_windows(status: PlanStatus) -> list[str]:
    """One indented line per PITR source: each store's recoverable window and lag."""
    lines = []
    for entry in status.pitr:
        parts = []
        for window in entry.windows:
            if window.start is None or window.end is None:
                parts.append(f"{window.store} none")
                continue
            lag = humanize_seconds((status.now - window.end).total_seconds())
            parts.append(
                f"{window.store} {window.start:%Y-%m-%d %H:%M:%S} to "
                f"{window.end:%Y-%m-%d %H:%M:%S} UTC (lag {lag})"
            )
        rpo = "–" if entry.rpo_seconds is None else humanize_seconds(entry.rpo_seconds)
        lines.append(f"  {entry.source} point-in-time RPO {rpo}; windows: {', '.join(parts)}")
    return lines


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
    loaded = [load_plan(path) for path in find_plan_files(plans)]
    with context.catalog() as catalog:
        sweep_quietly({plan.name: plan for plan in loaded}, catalog)  # runs of dead processes
        statuses = plan_statuses(catalog, loaded)
    if as_json:
        echo_json([status.to_json() for status in statuses])
    else:
        for status in statuses:
            click.echo(render_status(status))
    breached = any(status.breached for status in statuses)
    return int(ExitCode.OBJECTIVE_BREACHED if breached else ExitCode.OK)


FORMATS = ("json", "md", "html")
#: plans whose figures a report holds at once (the catalog answers for all of them together)
REPORT_CHUNK = 250


def render_part(reports: list[dict[str, object]], output_format: str) -> str:
    """Some plans' part of the report, in ``output_format``."""
    import json

    from drkit.report.render import render_html_sections, render_markdown_sections

    if output_format == "json":
        return ",\n".join(json.dumps(report, indent=2, default=str) for report in reports)
    if output_format == "md":
        return render_markdown_sections(reports)
    return render_html_sections(reports)


def join_parts(parts: list[str], output_format: str) -> str:
    """The whole report from its parts."""
    from drkit.report.render import HTML_HEAD, HTML_TAIL, MARKDOWN_TITLE

    if output_format == "json":
        return "[\n" + ",\n".join(part for part in parts if part) + "\n]\n"
    if output_format == "md":
        return MARKDOWN_TITLE + "\n".join(parts)
    return HTML_HEAD + "".join(parts) + HTML_TAIL


#: file extension -> report format, for `-o report.html` without --format
EXTENSION_FORMATS = {
    ".json": "json",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
}


def format_for(output: str | None) -> str:
    """The format an output file's extension names; Markdown for stdout or an unknown one."""
    if output is None:
        return "md"
    return EXTENSION_FORMATS.get(Path(output).suffix.lower(), "md")


@click.command(
    "report",
    epilog="""\b
Examples:
  drkit report plans/ --since 90d -o dr-report.html     # format from the extension
  drkit report plans/payments.yaml --since 30d --format json | jq .""",
)
@click.argument("plans", nargs=-1, required=True, type=click.Path())
@click.option("--since", default="90d", show_default=True, help="Period to cover (a duration).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    help="json, md or html. Default: from the -o file's extension, else md.",
)
@click.option("-o", "--output", type=click.Path(), help="Write to this file (default stdout).")
@click.pass_obj
def report_command(
    context: Context,
    plans: tuple[str, ...],
    since: str,
    output_format: str | None,
    output: str | None,
) -> int:
    """A compliance report per plan: backups due/taken/complete, copies per region, keys,
    drills, RTO p50/p95/max and worst RPO against the objectives, failures, evidence."""
    from drkit.report.compliance import plan_reports

    now = datetime.now(UTC)
    try:
        start = now - parse_duration(since)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    loaded = [load_plan(path) for path in find_plan_files(plans)]
    output_format = output_format or format_for(output)
    parts: list[str] = []
    with context.catalog() as catalog:
        sweep_quietly({plan.name: plan for plan in loaded}, catalog)  # runs of dead processes
        # a few hundred plans at a time: only their figures are held, then their text
        for first in range(0, len(loaded), REPORT_CHUNK):
            reports = plan_reports(catalog, loaded[first : first + REPORT_CHUNK], start, now)
            parts.append(render_part(reports, output_format))
    text = join_parts(parts, output_format)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
    return 0
