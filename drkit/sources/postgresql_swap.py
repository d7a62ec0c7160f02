"""Replacing a PostgreSQL database without dropping it first: the snapshot is loaded into
``<db>_drkit_restoring_<id>`` on the same server, verified, and both databases are renamed
in one transaction (``ALTER DATABASE ... RENAME`` is transactional), the old one kept as
``<db>_drkit_previous_<time>``. Sessions still connected to the old database are ended first:
a database in use cannot be renamed."""

from __future__ import annotations

import logging
import shlex
import time

import psycopg
from psycopg import sql as pgsql

from drkit.errors import SourceError
from drkit.secrets import Secret
from drkit.sources.base import Fingerprint, Target
from drkit.sources.pg_fidelity import missing_roles
from drkit.sources.postgresql import connect
from drkit.sources.swap import require_mark
from drkit.sources.urls import DatabaseUrl, parse_database_url

log = logging.getLogger(__name__)
#: Databases every cluster needs; restoring into one would mix a backup with the server's own.
SYSTEM_DATABASES = frozenset({"template0", "template1", "postgres"})
#: PostgreSQL truncates longer identifiers, which would make two names one.
NAME_LIMIT = 63
SWAP_ATTEMPTS = 10


def maintenance_url(url: DatabaseUrl) -> DatabaseUrl:
    """A database to run CREATE/DROP/ALTER DATABASE from (never the one acted on)."""
    return url.with_database("template1" if url.database == "postgres" else "postgres")


def database_exists(url: DatabaseUrl, password: Secret | None) -> bool:
    with connect(maintenance_url(url), password) as connection:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        return connection.execute(query, (url.require_database(),)).fetchone() is not None


class PostgresqlReplacement:
    """A database on a server, replaced by renaming."""

    def refusal(self, target: Target) -> str | None:
        name = parse_database_url(target.location).database
        if name in SYSTEM_DATABASES:
            return f"{name} is a system database of the PostgreSQL server"
        return None

    def exists(self, target: Target) -> bool:
        return database_exists(parse_database_url(target.location), target.password)

    def beside(self, target: Target, mark: str) -> Target:
        url = parse_database_url(target.location)
        base = url.require_database().encode("utf-8")[: NAME_LIMIT - len(mark)]
        name = base.decode("utf-8", "ignore") + mark
        return Target(str(url.with_database(name)), target.password, target.throwaway)

    def swap(self, staged: Target, target: Target, previous: Target) -> bool:
        url = parse_database_url(target.location)
        names = [parse_database_url(t.location).require_database() for t in (staged, previous)]
        current = url.require_database()
        with connect(maintenance_url(url), target.password) as connection:
            for attempt in range(SWAP_ATTEMPTS):
                try:
                    return _rename(connection, current, *names)
                except psycopg.errors.ObjectInUse:
                    # a client reconnected between the end of its session and the rename
                    time.sleep(0.2 * (attempt + 1))
                except psycopg.Error as error:
                    raise SourceError(
                        f"cannot swap {names[0]} in for {current}: {_first_line(error)}",
                        hint=f"{current} is unchanged; the loaded copy is removed",
                    ) from None
        raise SourceError(
            f"cannot swap {names[0]} in for {current}: clients keep reconnecting to it",
            hint=f"{current} is unchanged; stop the application's connections and restore again",
        )

    def remove(self, copy: Target) -> None:
        url = parse_database_url(copy.location)
        name = url.require_database()
        require_mark(name)
        with connect(maintenance_url(url), copy.password) as connection:
            force = " WITH (FORCE)" if connection.info.server_version >= 130000 else ""
            drop = pgsql.SQL("DROP DATABASE IF EXISTS {}" + force)
            connection.execute(drop.format(pgsql.Identifier(name)))

    def removal_command(self, copy: Target) -> str:
        url = parse_database_url(copy.location)
        maintenance = str(maintenance_url(url))
        return shlex.join(["dropdb", f"--maintenance-db={maintenance}", url.require_database()])


def roles_missing_on(target: Target, captured: Fingerprint) -> list[str]:
    """The roles of a snapshot (``captured``) the server of ``target`` lacks; none for a
    snapshot that recorded no roles."""
    if "roles" not in captured:
        return []
    url = parse_database_url(target.location)
    with connect(maintenance_url(url), target.password) as connection:
        return missing_roles(connection, captured)


def _rename(
    connection: psycopg.Connection[tuple[object, ...]], current: str, staged: str, previous: str
) -> bool:
    identifier = pgsql.Identifier
    with connection.transaction():
        row = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (current,))
        existed = row.fetchone() is not None
        if existed:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (current,),
            )
            rename = pgsql.SQL("ALTER DATABASE {} RENAME TO {}")
            connection.execute(rename.format(identifier(current), identifier(previous)))
        rename = pgsql.SQL("ALTER DATABASE {} RENAME TO {}")
        connection.execute(rename.format(identifier(staged), identifier(current)))
    log.info("swapped %s in for %s%s", staged, current, f" (kept as {previous})" if existed else "")
    return existed


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
