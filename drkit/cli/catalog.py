"""`drkit catalog ...`: migrations and rebuilding from the stores."""

from __future__ import annotations

import click

from drkit.actions.rebuild import rebuild_catalog
from drkit.cli.context import Context, echo_json, json_option
from drkit.cli.resources import opened_resources


@click.group("catalog")
def catalog_group() -> None:
    """The catalog of runs, snapshots, copies and drills (SQLite or PostgreSQL)."""


@catalog_group.command(
    "upgrade",
    epilog="""\b
Examples:
  drkit catalog upgrade
  drkit --catalog postgresql+psycopg://drkit@catalog.internal/drkit catalog upgrade""",
)
@json_option
@click.pass_obj
def upgrade(context: Context, as_json: bool) -> int:
    """Apply pending catalog migrations (also done automatically on first use)."""
    from drkit.catalog import Catalog

    catalog = Catalog.open(context.catalog_url)
    try:
        # migrations run when the catalog is opened; report those too
        applied = [*catalog.applied_on_open, *catalog.upgrade()]
        revision = catalog.current_revision()
    finally:
        catalog.close()
    if as_json:
        echo_json({"applied": applied, "revision": revision})
    elif applied:
        click.echo(f"applied {', '.join(applied)}; catalog at {revision}")
    else:
        click.echo(f"catalog already at {revision}; nothing to do")
    return 0


@catalog_group.command(
    "rebuild",
    epilog="""\b
Examples:
  drkit catalog rebuild plans/payments.yaml
  drkit catalog rebuild plans/payments.yaml --store s3-euw1""",
)
@click.argument("plan_file", type=click.Path())
@click.option("--store", "store_name", metavar="NAME", help="Rebuild from this store only.")
@json_option
@click.pass_obj
def rebuild(context: Context, plan_file: str, store_name: str | None, as_json: bool) -> int:
    """Recreate the catalog's snapshots of PLAN from the manifests in the stores."""
    with opened_resources(context, plan_file) as resources:
        result = rebuild_catalog(resources, store_name=store_name)
    if as_json:
        echo_json(result.to_json())
    else:
        click.echo(
            f"catalog rebuilt: {len(result.snapshots)} snapshot(s) from {', '.join(result.stores)}"
        )
        for problem in result.problems:
            click.echo(f"  skipped {problem}", err=True)
    return 0
