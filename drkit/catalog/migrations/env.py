"""Alembic environment for the catalog.

drkit runs migrations with a connection it opened itself (``config.attributes["connection"]``),
inside its own transaction and lock. A developer can also run the alembic command line with
``drkit/catalog/alembic.ini`` (e.g. ``revision --autogenerate``); the URL then comes from
``-x url=...``, DRKIT_CATALOG, or the default catalog file.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import Connection

from drkit.catalog.database import create_catalog_engine, resolve_url
from drkit.catalog.models import Base

config = context.config


def record_applied(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """Tell drkit which revisions this upgrade applied (Catalog.upgrade returns them)."""
    applied = config.attributes.get("applied")
    if applied is not None and step.is_upgrade:
        applied.extend(step.up_revision_ids)


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        on_version_apply=record_applied,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    engine = create_catalog_engine(
        resolve_url(context.get_x_argument(as_dictionary=True).get("url"))
    )
    try:
        with engine.begin() as own_connection:
            run_with(own_connection)
    finally:
        engine.dispose()


def run_offline() -> None:
    url = resolve_url(context.get_x_argument(as_dictionary=True).get("url"))
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
