"""Sources: what a plan protects, each able to snapshot itself to a stream, fingerprint what it
captured, and restore from a stream.

- ``postgresql``: pg_dump / pg_restore (``PostgresqlDatabase``); with ``pitr:``, physical base
  backups with pg_basebackup (``PhysicalPostgresql``)
- ``mysql``: mariadb-dump or mysqldump / the mariadb client (``MysqlDatabase``)
- ``sqlite``: the online backup API (``SqliteDatabase``)
- ``files``: a PAX tar stream of config paths (``FileTree``)

``make_source(spec)`` turns a plan's source spec into its implementation through an explicit
type-name table; each implementation is imported inside its factory so a plan without, say,
MySQL sources never imports the MySQL code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drkit.plan.schema import FilesSource, MysqlSource, PostgresqlSource, SourceSpec, SqliteSource
from drkit.sources.base import Source


def _make_postgresql(spec: PostgresqlSource) -> Source:
    if spec.pitr is not None:
        from drkit.sources.basebackup import PhysicalPostgresql

        physical: Source = PhysicalPostgresql(spec)
        return physical
    from drkit.sources.postgresql import PostgresqlDatabase

    source: Source = PostgresqlDatabase(spec)
    return source


def _make_mysql(spec: MysqlSource) -> Source:
    from drkit.sources.mysql import MysqlDatabase

    source: Source = MysqlDatabase(spec)
    return source


def _make_sqlite(spec: SqliteSource) -> Source:
    from drkit.sources.sqlite import SqliteDatabase

    return SqliteDatabase(spec)


def _make_files(spec: FilesSource) -> Source:
    from drkit.sources.files import FileTree

    return FileTree(spec)


#: Source type name (the plan's ``type:``) -> factory taking the matching spec.
SOURCE_FACTORIES: dict[str, Callable[[Any], Source]] = {
    "postgresql": _make_postgresql,
    "mysql": _make_mysql,
    "sqlite": _make_sqlite,
    "files": _make_files,
}


def make_source(spec: SourceSpec) -> Source:
    """The Source implementation for one of a plan's sources."""
    try:
        factory = SOURCE_FACTORIES[spec.type]
    except KeyError:
        raise ValueError(f"no source implementation for type {spec.type!r}") from None
    return factory(spec)
