"""Loading a staged pg_dump archive into a database: create it as the archive describes it
(encoding, locale, ICU), run pg_restore with owners and privileges (or without, when roles are
missing and the restore skips them), then replay the database-level properties (settings,
comment, ACL, role settings) under the database's new name. Failures name pg_restore's real
cause (``pg_fidelity.explain_restore_failure``)."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg import sql as pgsql

from drkit.errors import SourceError
from drkit.execute import Command, run
from drkit.secrets import Secret
from drkit.sources.base import Fingerprint, Restored
from drkit.sources.pg_fidelity import (
    DatabaseStatements,
    RolePlan,
    database_entries,
    explain_restore_failure,
    filtered_listing,
    policies_naming,
    rename_database_statements,
    write_listing,
)
from drkit.sources.postgresql import (
    _database_exists,
    _first_line,
    _maintenance_url,
    connect,
    make_restore_command,
    tool_environment,
)
from drkit.sources.urls import DatabaseUrl

log = logging.getLogger(__name__)


class ArchiveLoader:
    """One archive going into one database."""

    def __init__(
        self, source: str, url: DatabaseUrl, password: Secret | None, archive: Path, program: str
    ) -> None:
        self.source, self.url, self.password = source, url, password
        self.archive, self.program = archive, program
        self.name = url.require_database()

    def load(
        self,
        roles: RolePlan | None,
        captured: Fingerprint,
        *,
        jobs: int,
        replace: bool,
        folder: Path,
    ) -> Restored:
        """Create (or, with ``replace``, recreate) the database and load the archive into it;
        ``roles`` None: a snapshot without captured roles, restored without owners and
        privileges as drkit 0.1 did."""
        faithful = roles is not None and not roles.skips_privileges
        missing = roles.missing if roles is not None and roles.skips_privileges else []
        listing = self._pg_restore("--create", "--list", str(self.archive))
        statements = DatabaseStatements(None, [])
        if roles is not None:
            entries = database_entries(listing)
            if entries:
                database_list = write_listing(folder, "\n".join(entries) + "\n", "database.list")
                script = self._pg_restore(
                    "--create", f"--use-list={database_list}", "--file=-", str(self.archive)
                )
                statements = rename_database_statements(script, self.name, missing_roles=missing)
        self._create_database(statements.create, replace=replace)
        use_list = None
        excluded = policies_naming(captured, missing)
        if excluded:
            filtered = filtered_listing(listing, excluded_policies=excluded)
            use_list = write_listing(folder, filtered, "restore.list")
        command = make_restore_command(
            self.url,
            self.archive,
            jobs=jobs,
            password=self.password,
            program=self.program,
            keep_owners=faithful,
            use_list=use_list,
        )
        completed = run(command, check=False)
        if completed.returncode != 0:
            cause, hint = explain_restore_failure(completed.stderr.decode("utf-8", "replace"))
            raise SourceError(
                f"restoring {self.source} into {self.name} failed: {cause}", hint=hint
            )
        self._apply(statements.properties)
        restored = Restored(left_out=list(roles.left_out) if roles is not None else [])
        if excluded:
            restored.left_out.append(f"row-level security policies {', '.join(sorted(excluded))}")
        if missing:
            restored.unverified |= {"privileges", "schema_sha256"} if excluded else {"privileges"}
        return restored

    def _pg_restore(self, *arguments: str) -> str:
        """pg_restore writing a listing or script (no database connection) to stdout."""
        command = Command((self.program, *arguments), env=tool_environment())
        completed = run(command, check=False)
        if completed.returncode != 0:
            cause, hint = explain_restore_failure(completed.stderr.decode("utf-8", "replace"))
            raise SourceError(f"cannot read the archive of {self.source}: {cause}", hint=hint)
        return completed.stdout.decode("utf-8", "replace")

    def _create_database(self, create: str | None, *, replace: bool) -> None:
        database = pgsql.Identifier(self.name)
        with connect(_maintenance_url(self.url), self.password) as connection:
            exists = _database_exists(connection, self.name)
            if exists and replace:
                log.info("dropping database %s before restoring into it", self.name)
                # FORCE (PostgreSQL 13+) ends sessions still connected to the old database.
                force = " WITH (FORCE)" if connection.info.server_version >= 130000 else ""
                connection.execute(pgsql.SQL("DROP DATABASE {}" + force).format(database))
            if exists and not replace:
                return
            try:
                if create is not None:  # the archive's own: encoding, locale, ICU provider
                    connection.execute(create.encode("utf-8"))
                else:  # template0: nothing a local template1 holds may collide with the dump
                    statement = pgsql.SQL("CREATE DATABASE {} TEMPLATE template0")
                    connection.execute(statement.format(database))
            except psycopg.Error as error:
                raise SourceError(
                    f"cannot create database {self.name} as the snapshot describes it: "
                    f"{_first_line(error)}",
                    hint="the server lacks the snapshot's locale, ICU collation or tablespace; "
                    "install it (locale -a lists what there is) or restore to a server that has it",
                ) from None

    def _apply(self, statements: list[str]) -> None:
        if not statements:
            return
        with connect(_maintenance_url(self.url), self.password) as connection:
            for statement in statements:
                try:
                    connection.execute(statement.encode("utf-8"))
                except psycopg.Error as error:
                    raise SourceError(
                        f"restoring {self.source}'s database settings on {self.name} failed: "
                        f"{_first_line(error)}",
                        hint="the target is unchanged; fix the cause and restore again",
                    ) from None
