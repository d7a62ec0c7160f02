"""Scratch databases on an existing PostgreSQL server, for drills where starting a local
cluster is not wanted (or the server's version or extensions matter). Each gets a read-only
role of its own for checks; both are dropped afterwards, or by the next command when the
drill was killed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from drkit.errors import SandboxError
from drkit.sandboxes.base import CONNECT_TIMEOUT_SECONDS, first_line, url_with_database
from drkit.sandboxes.readers import (
    create_postgres_reader,
    drop_postgres_reader,
    grant_postgres_reads,
)
from drkit.sandboxes.scratch_server import ScratchServer
from drkit.secrets import SecretRef

if TYPE_CHECKING:
    import psycopg


class ScratchPostgres(ScratchServer):
    """One ``drkit_drill_<random>`` database per source on ``server_url``, each dropped
    (``WITH (FORCE)``, so lingering sessions do not keep it alive) on exit with its role."""

    kind = "scratch-postgresql"
    source_type = "postgresql"

    def __init__(
        self, server_url: str, password: SecretRef | None = None, *, plan: str | None = None
    ):
        super().__init__(server_url, password, plan=plan)
        self._granted: set[str] = set()  # databases whose reader exists

    def _connect(self, database: str | None = None) -> psycopg.Connection[Any]:
        """A connection to ``database``, or the server's maintenance database (the URL's, or
        ``postgres``)."""
        import psycopg

        maintenance = urlsplit(self.server_url).path.strip("/") or "postgres"
        try:
            return psycopg.connect(
                url_with_database(self.server_url, database or maintenance),
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                password=self.password.resolve().reveal() if self.password else None,
            )
        except psycopg.Error as error:
            raise SandboxError(
                f"cannot connect to sandbox server {self.server_url}: {first_line(error)}"
            ) from None

    def _create_database(self, name: str, reader: str) -> None:
        import psycopg

        try:
            with self._connect() as connection:
                connection.execute(f'CREATE DATABASE "{name}"')
        except psycopg.Error as error:
            raise SandboxError(
                f"could not create scratch database {name} on "
                f"{self.server_url}: {first_line(error)}"
            ) from None

    def _grant_reader(self, name: str, reader: str) -> None:
        import psycopg

        if name in self._granted:
            return
        try:
            with self._connect() as server, self._connect(name) as restored:
                create_postgres_reader(server, reader, self.reader_password)
                grant_postgres_reads(server, restored, reader)
        except psycopg.Error as error:
            raise SandboxError(
                f"could not create a read-only role for {name}: {first_line(error)}",
                hint="checks connect as a read-only role of their own: give the user of "
                "drill.sandbox.postgresql CREATEROLE (ALTER ROLE name CREATEROLE)",
            ) from None
        self._granted.add(name)

    def drop_all(self) -> None:
        import psycopg

        if not self.databases and not self.readers:
            return
        try:
            with self._connect() as connection:
                for source_name, name in list(self.databases.items()):
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    del self.databases[source_name]
                for database, reader in list(self.readers.items()):
                    drop_postgres_reader(connection, reader)
                    del self.readers[database]
        except (psycopg.Error, SandboxError) as error:
            left = ", ".join([*self.databases.values(), *self.readers.values()])
            raise SandboxError(
                f"could not drop scratch databases and roles {left} on {self.server_url}: "
                f"{first_line(error)}",
                hint="drop them by hand (DROP DATABASE name WITH (FORCE), DROP ROLE name), "
                "or let the next drkit command do it",
            ) from None


remove_leftover_databases = ScratchPostgres.remove_leftovers
