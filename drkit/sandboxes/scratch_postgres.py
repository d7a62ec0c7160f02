"""Scratch databases on an existing PostgreSQL server, for drills where starting a local
cluster is not wanted (or the server's version or extensions matter)."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

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
    import psycopg

log = logging.getLogger(__name__)


class ScratchPostgres:
    """One ``drkit_drill_<random>`` database per source on ``server_url``, each dropped
    (``WITH (FORCE)``, so lingering sessions do not keep it alive) on exit."""

    kind = "scratch-postgresql"

    def __init__(self, server_url: str, password: Secret | None = None):
        self.server_url = server_url
        self.password = password
        self.databases: dict[str, str] = {}  # source name -> database name

    def _connect(self) -> psycopg.Connection[Any]:
        """A connection to the server's maintenance database (the URL's, or ``postgres``)."""
        import psycopg

        maintenance = urlsplit(self.server_url).path.strip("/") or "postgres"
        try:
            return psycopg.connect(
                url_with_database(self.server_url, maintenance),
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                password=self.password.reveal() if self.password else None,
            )
        except psycopg.Error as error:
            raise SandboxError(
                f"cannot connect to sandbox server {self.server_url}: {first_line(error)}"
            ) from None

    def __enter__(self) -> Self:
        self._connect().close()  # fail before the drill restores anything
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        import psycopg

        if not self.databases:
            return
        try:
            with self._connect() as connection:
                for source_name, name in list(self.databases.items()):
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    del self.databases[source_name]
        except (psycopg.Error, SandboxError) as error:
            left = ", ".join(self.databases.values())
            failure = SandboxError(
                f"could not drop scratch databases {left} on {self.server_url}: "
                f"{first_line(error)}",
                hint=f"drop them by hand: DROP DATABASE name WITH (FORCE) for each of {left}",
            )
            report_teardown_failure(failure, while_failing=exc_type is not None)

    def target_for(self, source: SourceSpec) -> Target:
        """A new, empty database on the server, for this source only."""
        import psycopg

        if source.type != "postgresql":
            raise refuse_source_type(self, source)
        if source.name not in self.databases:
            name = new_scratch_database_name()
            try:
                with self._connect() as connection:
                    connection.execute(f'CREATE DATABASE "{name}"')
            except psycopg.Error as error:
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
