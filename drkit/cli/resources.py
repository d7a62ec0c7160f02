"""Opening what a command needs: plan, catalog, stores and keys."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import click

from drkit.actions.resources import Resources, open_resources
from drkit.cli.cleanup import sweep_quietly
from drkit.cli.context import Context
from drkit.errors import CatalogError, UsageError
from drkit.leases import private_scratch
from drkit.plan.loader import load_plan

log = logging.getLogger(__name__)


@contextmanager
def opened_resources(
    context: Context, plan_file: str, *, catalog_optional: bool = False
) -> Iterator[Resources]:
    """Plan + stores + keys + catalog. With ``catalog_optional`` (restore, snapshots), a
    catalog that cannot be opened is reported and the stores' manifests are used instead.
    First, what earlier drkit processes left of this plan when they died is removed; the
    command's own temporary files then live in a private scratch folder (leases/scratch)."""
    from drkit.catalog import Catalog

    plan = load_plan(plan_file)
    try:
        catalog: Catalog | None = Catalog.open(context.catalog_url)
    except CatalogError as error:
        if not catalog_optional:
            raise
        log.warning("catalog unavailable (%s); working from the stores' manifests", error.message)
        catalog = None
    try:
        sweep_quietly({plan.name: plan}, catalog)
        with private_scratch():
            yield open_resources(plan, catalog)
    finally:
        if catalog is not None:
            catalog.close()


wait_for_lock_option = click.option(
    "--wait-for-lock",
    "wait_for_lock",
    metavar="DURATION",
    help="When another drkit holds the plan's lock, wait up to DURATION (e.g. 10m) for it "
    "instead of exiting 5 (locked).",
)


def plan_lock(
    resources: Resources, wait_for_lock: str | None, *, needed: bool = True
) -> contextlib.AbstractContextManager[object]:
    """The plan's lock around a command that writes (backup, drill, prune, restore to the
    origin), so it never runs beside `drkit run` or another command on the same plan. None
    needed (a dry run) or no catalog (a restore while it is gone): no lock."""
    from drkit.plan.durations import parse_duration

    try:
        wait_seconds = parse_duration(wait_for_lock).total_seconds() if wait_for_lock else 0.0
    except ValueError as error:
        raise UsageError(f"--wait-for-lock {wait_for_lock!r}: {error}") from None
    if not needed or resources.catalog is None:
        return contextlib.nullcontext()
    return resources.catalog.hold_lock(resources.plan.name, wait_seconds=wait_seconds)
