"""Scratch databases on a MariaDB or MySQL server, for drills of mysql sources."""

from __future__ import annotations

import getpass
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import unquote, urlsplit

from drkit.errors import SandboxError
from drkit.plan.schema import SourceSpec
from drkit.sandboxes.base import (
    CONNECT_TIMEOUT_SECONDS,
    first_line,
    new_scratch_database_name,
    refuse_source_type,
    report_teardown_failure,
    url_with_database,
)
from drkit.secrets import Secret
from drkit.sources.base import Target

if TYPE_CHECKING:
    import pymysql.connections

log = logging.getLogger(__name__)
DEFAULT_PORT = 3306


class ScratchMysql:
    """One ``drkit_drill_<random>`` database per source on ``server_url``
    (``mysql://root@host:3306/``), each dropped on exit."""

    kind = "scratch-mysql"

    def __init__(self, server_url: str, password: Secret | None = None):
        self.server_url = server_url
        self.password = password
        self.databases: dict[str, str] = {}  # source name -> database name

    def _connect(self) -> pymysql.connections.Connection:
        import pymysql

        parts = urlsplit(self.server_url)
        try:
            return pymysql.connect(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or DEFAULT_PORT,
                # like the mysql client, the login name when the URL names no user
                user=unquote(parts.username) if parts.username else getpass.getuser(),
                password=self.password.reveal() if self.password else "",
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                autocommit=True,
            )
        except (pymysql.Error, ValueError) as error:
            raise SandboxError(
                f"cannot connect to sandbox server {self.server_url}: {first_line(error)}"
            ) from None

    def _execute(self, statement: str) -> None:
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def __enter__(self) -> Self:
        self._connect().close()  # fail before the drill restores anything
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        import pymysql

        try:
            for source_name, name in list(self.databases.items()):
                self._execute(f"DROP DATABASE IF EXISTS `{name}`")
                del self.databases[source_name]
        except (pymysql.Error, SandboxError) as error:
            left = ", ".join(self.databases.values())
            failure = SandboxError(
                f"could not drop scratch databases {left} on {self.server_url}: "
                f"{first_line(error)}",
                hint=f"drop them by hand: DROP DATABASE name for each of {left}",
            )
            report_teardown_failure(failure, while_failing=exc_type is not None)

    def target_for(self, source: SourceSpec) -> Target:
        """A new, empty utf8mb4 database on the server, for this source only."""
        import pymysql

        if source.type != "mysql":
            raise refuse_source_type(self, source)
        if source.name not in self.databases:
            name = new_scratch_database_name()
            try:
                self._execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            except pymysql.Error as error:
                raise SandboxError(
                    f"could not create scratch database {name} on "
                    f"{self.server_url}: {first_line(error)}"
                ) from None
            self.databases[source.name] = name
        return Target(
            url_with_database(self.server_url, self.databases[source.name]), self.password
        )

    def describe(self) -> str:
        return f"scratch databases on {self.server_url}"
