"""Schema revisions: alembic configured from the installed package (never the working
directory), and an upgrade to head that is safe when several runners open the catalog at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, exc, text

from drkit.catalog.database import describe_error
from drkit.errors import CatalogError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent / "migrations"
#: the newest revision in migrations/versions (a test keeps it equal to alembic's head), so an
#: up-to-date catalog opens without importing alembic at all (start-up time and memory)
HEAD_REVISION = "0006_wal_ledger"
# pg_advisory_xact_lock key for "one upgrade at a time"; any constant shared by all drkits
POSTGRES_UPGRADE_LOCK_KEY = 0x64726B6974  # "drkit"


def make_alembic_config(connection: Connection | None = None) -> Config:
    """An alembic Config pointing at the migrations shipped inside this package."""
    from alembic.config import Config

    config = Config()
    # configparser interpolation would read a '%' in the install path as a placeholder
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this drkit knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(make_alembic_config()).get_current_head()
    assert head is not None, "drkit ships at least one migration"
    return head


def read_current_revision(engine: Engine, url: str) -> str | None:
    """The catalog's schema revision, or None when it has never been migrated."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except exc.DBAPIError as error:
        raise _catalog_error(url, error) from error


def upgrade_to_head(engine: Engine, url: str) -> list[str]:
    """Apply every missing revision in one transaction; return the ones applied, in order.

    Concurrent upgraders wait for each other: PostgreSQL through a transaction-scoped
    advisory lock, SQLite through the write lock its BEGIN IMMEDIATE takes. The one that
    comes second finds the schema current and applies nothing.
    """
    if _quick_revision(engine) == HEAD_REVISION:
        return []
    from alembic import command
    from alembic.util import CommandError

    applied: list[str] = []
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_UPGRADE_LOCK_KEY}
                )
            config = make_alembic_config(connection)
            config.attributes["applied"] = applied
            command.upgrade(config, "head")
    except CommandError as error:
        raise CatalogError(
            f"cannot upgrade catalog {url}: {error}",
            hint="the catalog may be newer than this drkit; upgrade drkit",
        ) from error
    except exc.DBAPIError as error:
        raise _catalog_error(url, error) from error
    return applied


def _quick_revision(engine: Engine) -> str | None:
    """The recorded revision by one plain query; None when it cannot be read that way."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except exc.DBAPIError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def _catalog_error(url: str, error: exc.DBAPIError) -> CatalogError:
    return CatalogError(f"cannot open catalog {url}: {describe_error(error)}")
