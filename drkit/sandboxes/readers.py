"""Read-only users for drill checks: each scratch database gets a user of its own, with a
random password, allowed to read that database and nothing else, so that a check can neither
change the restored data (DDL and DML fail) nor reach any other database on the server. The
user is dropped with its database.

The statements are plain functions of names, so both the sandbox and the sweeper that cleans
up after a killed drill use the same ones.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from drkit.secrets import Secret

if TYPE_CHECKING:
    import psycopg


def new_reader_name(lease_id: str, number: int) -> str:
    """``drkit_reader_<lease>_<n>``: recognisable, unique per sandbox and database."""
    return f"drkit_reader_{lease_id}_{number}"


def new_reader_password() -> Secret:
    """A random password only drkit and the checks of one drill ever see."""
    return Secret(secrets.token_urlsafe(24))


# --- PostgreSQL --------------------------------------------------------------------------------


def create_postgres_reader(
    connection: psycopg.Connection[Any], name: str, password: Secret
) -> None:
    """A login role that can do nothing but read what it is granted, read-only by default."""
    from psycopg import sql

    connection.execute(
        sql.SQL(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION "
            "PASSWORD {}"
        ).format(sql.Identifier(name), sql.Literal(password.reveal()))
    )
    connection.execute(
        sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(name))
    )


def grant_postgres_reads(
    server: psycopg.Connection[Any], database: psycopg.Connection[Any], name: str
) -> None:
    """Let ``name`` connect to ``database``'s database (alone: nobody else may any more, nor
    make temporary tables there) and read every table, view and sequence of its schemas.
    ``server`` is a connection elsewhere on the server; run after the restore."""
    from psycopg import sql

    role = sql.Identifier(name)
    database_name = sql.Identifier(database.info.dbname)
    server.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database_name))
    server.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database_name, role))
    schemas = database.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname <> 'information_schema' "
        "AND nspname !~ '^pg_'"
    ).fetchall()
    for (schema,) in schemas:
        name_of_schema = sql.Identifier(str(schema))
        for statement in (
            "GRANT USAGE ON SCHEMA {} TO {}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}",
            "GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}",
        ):
            database.execute(sql.SQL(statement).format(name_of_schema, role))


def drop_postgres_reader(connection: psycopg.Connection[Any], name: str) -> None:
    """Drop the role (after its database: nothing else holds a grant to it)."""
    from psycopg import sql

    connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


# --- MariaDB / MySQL ---------------------------------------------------------------------------

#: The hosts a reader is created for: '%' for TCP from anywhere, and 'localhost' because an
#: anonymous ''@'localhost' account, where one exists, would otherwise take precedence.
MYSQL_READER_HOSTS = ("%", "localhost")


def create_mysql_reader_statements(name: str, password: Secret, database: str) -> list[str]:
    """CREATE USER and GRANT statements for a user that may read ``database`` only (SELECT and
    SHOW VIEW: no DDL, no DML, no routines, no other database). ``name`` and ``database``
    are drkit's own names ([a-z0-9_]); the password is URL-safe base64."""
    statements = []
    for host in MYSQL_READER_HOSTS:
        account = f"'{name}'@'{host}'"
        statements.append(f"CREATE USER {account} IDENTIFIED BY '{password.reveal()}'")
        statements.append(f"GRANT SELECT, SHOW VIEW ON `{database}`.* TO {account}")
    return statements


def drop_mysql_reader_statements(name: str) -> list[str]:
    return [f"DROP USER IF EXISTS '{name}'@'{host}'" for host in MYSQL_READER_HOSTS]
