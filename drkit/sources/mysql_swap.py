"""Replacing a MariaDB/MySQL database without dropping it first. A database cannot be renamed,
but its tables can move between databases: the snapshot is loaded into
``<db>_drkit_restoring_<id>``, verified, and one ``RENAME TABLE`` statement (atomic) moves
every table of the target to ``<db>_drkit_previous_<time>`` and every loaded table into the
target. Grants, which the server keeps per database name, do not follow the tables: the
target is given the loaded copy's, and a copy that is removed loses its own. Views, triggers,
routines and events cannot move that way: when either side has any, ``swap`` raises
``SwapUnsupported`` and the restore falls back to loading in place, after the loaded copy
proved the snapshot good."""

from __future__ import annotations

import contextlib
import logging
import shlex
from typing import Any

import pymysql

from drkit.errors import SourceError
from drkit.sources import mysql_fidelity
from drkit.sources.base import Target
from drkit.sources.mysql import connect, fetch_all, quote_name
from drkit.sources.swap import SwapUnsupported, require_mark
from drkit.sources.urls import parse_database_url

log = logging.getLogger(__name__)
#: The server's own schemas: never a restore target.
SYSTEM_DATABASES = frozenset({"mysql", "sys", "information_schema", "performance_schema"})
NAME_LIMIT = 64
OTHER_OBJECTS = """
    SELECT (SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s)
         + (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s)
         + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s)
         + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s)"""


class MysqlReplacement:
    """A database on a server, replaced by moving its tables."""

    def refusal(self, target: Target) -> str | None:
        name = (parse_database_url(target.location).database or "").lower()
        if name in SYSTEM_DATABASES:
            return f"{name} is a system database of the MariaDB/MySQL server"
        return None

    def exists(self, target: Target) -> bool:
        url = parse_database_url(target.location)
        with connect(url, target.password, database=False) as connection:
            query = "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s"
            return bool(fetch_all(connection, query, url.require_database()))

    def beside(self, target: Target, mark: str) -> Target:
        url = parse_database_url(target.location)
        base = url.require_database()[: NAME_LIMIT - len(mark)]
        return Target(str(url.with_database(base + mark)), target.password, target.throwaway)

    def swap(self, staged: Target, target: Target, previous: Target) -> bool:
        url = parse_database_url(target.location)
        current = url.require_database()
        loaded = parse_database_url(staged.location).require_database()
        kept = parse_database_url(previous.location).require_database()
        with connect(url, target.password, database=False) as connection:
            existed = self.exists(target)
            for name in (loaded, current) if existed else (loaded,):
                if _other_objects(connection, name):
                    raise SwapUnsupported(f"{name} holds views, triggers, routines or events")
            incoming = _grants(connection, loaded)
            outgoing = _grants(connection, current) if existed else {}
            moves = []
            if existed:
                _create_like(connection, current, kept)
                moves += [(current, kept, table) for table in _tables(connection, current)]
            else:
                _create_like(connection, loaded, current)
            moves += [(loaded, current, table) for table in _tables(connection, loaded)]
            if moves:
                statement = "RENAME TABLE " + ", ".join(
                    f"{quote_name(a)}.{quote_name(t)} TO {quote_name(b)}.{quote_name(t)}"
                    for a, b, t in moves
                )
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(statement)
                except pymysql.MySQLError as error:
                    # RENAME TABLE is atomic: the database made for the swap is still empty
                    made = kept if existed else current
                    with connection.cursor() as cursor:
                        cursor.execute(f"DROP DATABASE IF EXISTS {quote_name(made)}")
                    raise SourceError(
                        f"cannot swap {loaded} in for {current}: {error.args[-1]}",
                        hint=f"{current} is unchanged; the loaded copy is removed",
                    ) from None
            if existed:  # the database's own defaults, as the loaded copy has them
                _copy_defaults(connection, loaded, current)
            _move_grants(connection, outgoing, incoming, current)
        self.remove(staged)  # empty now: a database cannot be renamed, only emptied
        return existed

    def remove(self, copy: Target) -> None:
        url = parse_database_url(copy.location)
        name = url.require_database()
        require_mark(name)
        with connect(url, copy.password, database=False) as connection:
            # the server keeps grants on a name after its database is dropped
            with contextlib.suppress(pymysql.MySQLError):
                mysql_fidelity.forget_grants(connection, name)
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {quote_name(name)}")

    def removal_command(self, copy: Target) -> str:
        url = parse_database_url(copy.location)
        name = url.require_database()
        return shlex.join(
            ["mariadb", f"--host={url.host}", f"--port={url.port or 3306}"]
            + ([f"--user={url.user}"] if url.user else [])
            + ["-e", f"DROP DATABASE {quote_name(name)}"]
        )


def _other_objects(connection: Any, database: str) -> int:
    [(count,)] = fetch_all(connection, OTHER_OBJECTS, database, database, database, database)
    return int(count)


def _tables(connection: Any, database: str) -> list[str]:
    query = (
        "SELECT TABLE_NAME FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'"
    )
    return [str(row[0]) for row in fetch_all(connection, query, database)]


def _defaults(connection: Any, database: str) -> str:
    query = (
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME"
        " FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s"
    )
    [(charset, collation)] = fetch_all(connection, query, database)
    return f"CHARACTER SET {charset} COLLATE {collation}"


def _create_like(connection: Any, model: str, name: str) -> None:
    """A new database with ``model``'s default character set and collation."""
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {quote_name(name)} {_defaults(connection, model)}")


def _copy_defaults(connection: Any, model: str, name: str) -> None:
    """``name`` takes ``model``'s default character set and collation (the loaded copy's)."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE {quote_name(name)} {_defaults(connection, model)}")


def _grants(connection: Any, database: str) -> dict[str, Any]:
    """The grants on ``database`` as ``mysql_fidelity`` captures them (none when the restoring
    user cannot read them: it could not have applied any either)."""
    try:
        grants, kinds = mysql_fidelity.capture_grants(connection, database)
    except pymysql.MySQLError as error:
        log.warning("cannot read the grants on %s: %s", database, error.args[-1])
        return {}
    return {"privileges": grants, "accounts": kinds}


def _move_grants(
    connection: Any, outgoing: dict[str, Any], incoming: dict[str, Any], database: str
) -> None:
    """Grants are kept per database name and do not follow moved tables: ``database`` gets the
    loaded copy's grants, and loses those of the database it replaced that the copy lacks."""
    kept = {line for lines in (incoming.get("privileges") or {}).values() for line in lines}
    target = "`" + database.replace("`", "``") + "`"
    placeholder = f"`{mysql_fidelity.PLACEHOLDER}`"
    with connection.cursor() as cursor:
        for lines in (outgoing.get("privileges") or {}).values():
            for line in lines:
                if line not in kept:
                    for statement in mysql_fidelity.revoke_statements(
                        line.replace(placeholder, target)
                    ):
                        cursor.execute(statement)
    for left_out in mysql_fidelity.grant_again(connection, incoming, database):
        log.warning("swapping in %s left out %s", database, left_out)
