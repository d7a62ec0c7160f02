"""The PostgreSQL server the benchmark runs against: URLs, connections, databases."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class PostgresServer:
    """A server reached with trust authentication (the default: postgres on 127.0.0.1:5432)."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def environment(self) -> dict[str, str]:
        """Environment for psql, pgbench, pg_dump and pg_restore."""
        return {
            **os.environ,
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
        }

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(database), autocommit=True)

    def execute(self, database: str, statement: str) -> list[tuple[object, ...]]:
        """Run one statement; its rows (empty for statements without a result)."""
        with self.connect(database) as connection:
            cursor = connection.execute(statement.encode())
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str) -> None:
        with self.connect() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        with self.connect() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def databases_starting_with(self, prefix: str) -> list[str]:
        with self.connect() as connection:
            rows = connection.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
            ).fetchall()
        return [str(row[0]) for row in rows]

    def database_bytes(self, name: str) -> int:
        with self.connect() as connection:
            row = connection.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
        return int(str(row[0])) if row else 0

    def version(self) -> str:
        with self.connect() as connection:
            row = connection.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"
