"""Opening what a command needs: plan, catalog, stores and keys."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from drkit.actions.resources import Resources, open_resources
from drkit.cli.context import Context
from drkit.errors import CatalogError
from drkit.plan.loader import load_plan

log = logging.getLogger(__name__)


@contextmanager
def opened_resources(
    context: Context, plan_file: str, *, catalog_optional: bool = False
) -> Iterator[Resources]:
    """Plan + stores + keys + catalog. With ``catalog_optional`` (restore, snapshots), a
    catalog that cannot be opened is reported and the stores' manifests are used instead."""
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
        yield open_resources(plan, catalog)
    finally:
        if catalog is not None:
            catalog.close()
