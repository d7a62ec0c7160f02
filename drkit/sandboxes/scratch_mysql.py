"""Scratch databases on a MariaDB or MySQL server, for drills of mysql sources. Each gets a
read-only user of its own, with a random password, for checks; both are dropped afterwards,
or by the next command when the drill was killed."""

from __future__ import annotations

import getpass
import logging
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from drkit.errors import SandboxError
from drkit.sandboxes.base import CONNECT_TIMEOUT_SECONDS, first_line
from drkit.sandboxes.readers import (
    create_mysql_reader_statements,
    drop_mysql_reader_statements,
)
from drkit.sandboxes.scratch_server import ScratchServer

if TYPE_CHECKING:
    import pymysql.connections

DEFAULT_PORT = 3306

log = logging.getLogger(__name__)


class ScratchMysql(ScratchServer):
    """One ``drkit_drill_<random>`` database per source on ``server_url``
    (``mysql://root@host:3306/``), each dropped on exit with its reader."""

    kind = "scratch-mysql"
    source_type = "mysql"

    def _connect(self) -> pymysql.connections.Connection:
        import pymysql

        parts = urlsplit(self.server_url)
        try:
            return pymysql.connect(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or DEFAULT_PORT,
                # like the mysql client, the login name when the URL names no user
                user=unquote(parts.username) if parts.username else getpass.getuser(),
                password=self.password.resolve().reveal() if self.password else "",
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                autocommit=True,
            )
        except (pymysql.Error, ValueError) as error:
            raise SandboxError(
                f"cannot connect to sandbox server {self.server_url}: {first_line(error)}"
            ) from None

    def _execute(self, *statements: str) -> None:
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            connection.close()

    def _create_database(self, name: str, reader: str) -> None:
        """The database, utf8mb4, and its reader: grants on ``name``.* hold for tables the
        restore creates later, and survive the restore's DROP and CREATE DATABASE."""
        import pymysql

        try:
            self._execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4",
                *create_mysql_reader_statements(reader, self.reader_password, name),
            )
        except pymysql.Error as error:
            raise SandboxError(
                f"could not create scratch database {name} and its reader on "
                f"{self.server_url}: {first_line(error)}",
                hint="the user of drill.sandbox.mysql needs CREATE, DROP, CREATE USER and "
                "GRANT OPTION (checks connect as a read-only user of their own)",
            ) from None

    def _grant_reader(self, name: str, reader: str) -> None:
        return  # granted when the database was made

    def _forget_grants(self, name: str) -> None:
        """The grants a faithful restore gave on the scratch database outlive it on the
        server: revoke them (best effort; they grant nothing once the name is gone)."""
        import pymysql

        from drkit.sources.mysql_fidelity import forget_grants

        try:
            connection = self._connect()
            try:
                forget_grants(connection, name)
            finally:
                connection.close()
        except (pymysql.Error, SandboxError) as error:
            log.warning("could not revoke the grants on scratch database %s: %s", name, error)

    def drop_all(self) -> None:
        import pymysql

        try:
            for source_name, name in list(self.databases.items()):
                self._execute(f"DROP DATABASE IF EXISTS `{name}`")
                self._forget_grants(name)
                del self.databases[source_name]
            for database, reader in list(self.readers.items()):
                self._execute(*drop_mysql_reader_statements(reader))
                del self.readers[database]
        except (pymysql.Error, SandboxError) as error:
            left = ", ".join([*self.databases.values(), *self.readers.values()])
            raise SandboxError(
                f"could not drop scratch databases and users {left} on {self.server_url}: "
                f"{first_line(error)}",
                hint="drop them by hand (DROP DATABASE name, DROP USER name), "
                "or let the next drkit command do it",
            ) from None


remove_leftover_databases = ScratchMysql.remove_leftovers
