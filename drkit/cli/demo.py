"""`drkit demo`: the whole product on an embedded default, no server needed."""

from __future__ import annotations

import os
from pathlib import Path

import click

from drkit.cli.context import Context
from drkit.errors import ExitCode


@click.command(
    "demo",
    epilog="""\b
Examples:
  drkit demo
  drkit demo --dir /tmp/my-demo && drkit --catalog sqlite:////tmp/my-demo/catalog.db status /tmp/my-demo/plan.yaml""",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to create the demo backend (default $DRKIT_DEMO_DIR or /tmp/drkit-demo).",
)
@click.pass_obj
def demo_command(context: Context, directory: str | None) -> int:
    """Create a small API backend (SQLite + config folder), back it up to two local regions,
    drill a restore into a sandbox, then print status, RTO, RPO and a report."""
    from drkit.actions.backup import backup
    from drkit.actions.drill import drill
    from drkit.actions.resources import open_resources
    from drkit.catalog import Catalog
    from drkit.cli.backup import render_backup
    from drkit.cli.drill import drill_exit_code, render_drill
    from drkit.cli.report import render_status
    from drkit.demo import DEFAULT_DIR, create_workspace
    from drkit.plan.loader import load_plan
    from drkit.report.compliance import plan_report
    from drkit.report.render import render_html, render_markdown
    from drkit.report.status import plan_status

    root = Path(directory or os.environ.get("DRKIT_DEMO_DIR") or DEFAULT_DIR).resolve()
    os.environ["DRKIT_DEMO_DIR"] = str(root)
    plan_path = create_workspace(root)
    click.echo(f"== demo backend in {root} (plan {plan_path})")
    plan = load_plan(plan_path)
    catalog_url = context.catalog_url or f"sqlite:///{root / 'catalog.db'}"
    with Catalog.open(catalog_url) as catalog:
        resources = open_resources(plan, catalog)
        click.echo("== backup")
        backed_up = backup(resources)
        render_backup(backed_up)
        click.echo("== drill")
        drills = drill(resources)
        for result in drills:
            render_drill(result)
        click.echo("== status")
        status = plan_status(catalog, plan)
        click.echo(render_status(status))
        from datetime import UTC, datetime, timedelta

        report = [plan_report(catalog, plan, datetime.now(UTC) - timedelta(days=90))]
    (root / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (root / "report.html").write_text(render_html(report), encoding="utf-8")
    click.echo(f"== report: {root / 'report.md'} and {root / 'report.html'}")
    last = drills[-1]
    click.echo(
        f"measured RTO {last.rto_seconds or 0:.2f}s (objective {last.rto_objective or 0:.0f}s), "
        f"RPO {last.rpo_seconds or 0:.2f}s (objective {last.rpo_objective or 0:.0f}s)"
    )
    worst = max(
        int(backed_up.outcome.exit_code),
        int(drill_exit_code(drills)),
        int(ExitCode.OBJECTIVE_BREACHED if status.breached else ExitCode.OK),
    )
    return worst
