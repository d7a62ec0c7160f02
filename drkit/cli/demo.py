"""`drkit demo`: the whole product on an embedded default, no server needed."""

from __future__ import annotations

import os
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from drkit.cli.context import Context
from drkit.cli.outcomes import exit_code
from drkit.outcome import Outcome


@click.command(
    "demo",
    epilog="""\b
Examples:
  drkit demo
  drkit demo --dir /tmp/my-demo && drkit status /tmp/my-demo/plan.yaml
Runs are recorded in the catalog every drkit command uses (--catalog, DRKIT_CATALOG, or
$DRKIT_HOME/catalog.db), so the commands it suggests at the end work as printed.""",
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
    drill a restore into a sandbox, then print status, RTO, RPO and a report. Running it again
    resets the backend and takes one more snapshot."""
    from drkit.actions.backup import backup
    from drkit.actions.drill import drill
    from drkit.actions.resources import open_resources
    from drkit.catalog import Catalog
    from drkit.cli.backup import render_backup
    from drkit.cli.drill import render_drill
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
    with Catalog.open(context.catalog_url) as catalog:
        click.echo(f"== catalog {catalog.url}")
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
        report = [plan_report(catalog, plan, datetime.now(UTC) - timedelta(days=90))]
    (root / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (root / "report.html").write_text(render_html(report), encoding="utf-8")
    click.echo(f"== report: {root / 'report.md'} and {root / 'report.html'}")
    last = drills[-1]
    click.echo(
        f"measured RTO {last.rto_seconds or 0:.2f}s (objective {last.rto_objective or 0:.0f}s), "
        f"RPO {last.rpo_seconds or 0:.2f}s (objective {last.rpo_objective or 0:.0f}s)"
    )
    for line in next_commands(plan_path, context.catalog_url):
        click.echo(line)
    return exit_code(
        [
            backed_up.outcome,
            *(result.outcome for result in drills),
            Outcome.BREACHED if status.breached else Outcome.OK,
        ]
    )


def next_commands(plan_path: Path, catalog_url: str | None) -> list[str]:
    """What to try next, runnable as printed: a --catalog given on this command line (not by
    DRKIT_CATALOG, which the next commands see as well) is repeated."""
    drkit = "drkit"
    if catalog_url and catalog_url != os.environ.get("DRKIT_CATALOG"):
        drkit += f" --catalog {shlex.quote(catalog_url)}"
    plan = shlex.quote(str(plan_path))
    side = shlex.quote(f"api-db={plan_path.parent / 'recovered' / 'app.db'}")
    return [
        "== try next",
        f"  {drkit} status {plan}      # objectives met? exit 4 when not",
        f"  {drkit} snapshots {plan}   # what can be restored, from which stores",
        f"  {drkit} restore {plan} --source api-db --to {side} --dry-run"
        "   # without --dry-run: restore next to the live data",
    ]
