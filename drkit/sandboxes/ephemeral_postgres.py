"""A throwaway PostgreSQL cluster for drills, reachable by drkit alone: initdb + pg_ctl in a
folder of its own (mode 0700, named after its lease), listening on a unix socket in that
folder, and on 127.0.0.1 only when a command check needs a URL; every connection must give a
password (scram-sha-256; the superuser's is random and known to drkit alone). Checks connect
as a read-only role. No fsync (it lives for one drill). Stopped with ``pg_ctl -m immediate``
and deleted on exit; if drkit is killed first, its lease lets the next command do that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from drkit.errors import SandboxError, ToolError
from drkit.execute import find_program, run
from drkit.leases import registry
from drkit.leases.folders import make_leased_folder
from drkit.leases.processes import child_processes, is_process_alive
from drkit.leases.registry import Lease
from drkit.plan.schema import SourceSpec
from drkit.sandboxes.base import database_name_for, refuse_source_type, report_teardown_failure
from drkit.sandboxes.cluster import (
    DIRECTORY_PREFIX,
    PASSWORD_FILE,
    SERVER_USER,
    STOP_WAIT_SECONDS,
    choose_free_port,
    choose_parent_directory,
    cluster_settings,
    make_initdb_command,
    make_start_command,
    make_stop_command,
    postmaster_pid,
    server_user_prefix,
    wait_for_processes,
)
from drkit.sandboxes.readers import (
    create_postgres_reader,
    grant_postgres_reads,
    new_reader_password,
)
from drkit.sources.base import Target
from drkit.sources.urls import DatabaseUrl

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "EphemeralPostgres",
    "is_process_alive",
    "make_initdb_command",
    "make_start_command",
    "make_stop_command",
]

log = logging.getLogger(__name__)
START_ATTEMPTS = 3  # a free port may be taken between choosing it and binding it
READER = "drkit_reader"


class EphemeralPostgres:
    """A PostgreSQL cluster that exists for the duration of a ``with`` block. With ``tcp``, it
    also listens on 127.0.0.1, and read-only targets are TCP URLs (for command checks)."""

    kind = "ephemeral-postgresql"

    def __init__(
        self, major_version: str | None = None, *, tcp: bool = False, plan: str | None = None
    ):
        self.major_version = major_version
        self.tcp = tcp
        self.plan = plan
        self.directory: Path | None = None
        self.port: int | None = None
        self.server_pids: list[int] = []
        self.password = new_reader_password()  # the superuser's
        self.reader_password = new_reader_password()
        self._databases: dict[str, str] = {}  # source name -> database name
        self._has_reader = False
        self._lease: Lease | None = None

    @property
    def data_directory(self) -> Path:
        if self.directory is None:
            raise SandboxError("the ephemeral cluster is not running (use it in a with block)")
        return self.directory / "data"

    def url_for(self, database: str, *, user: str = "postgres", tcp: bool = False) -> str:
        """A URL of one of the cluster's databases: over its socket, or over TCP."""
        if tcp:
            return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"
        options = (("host", str(self.directory)), ("port", str(self.port)))
        return str(DatabaseUrl("postgresql", "", None, user, database, options))

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException as error:
            self._tear_down(while_failing=True)
            if isinstance(error, ToolError):
                raise SandboxError(
                    f"could not start an ephemeral PostgreSQL: {error.message}",
                    hint=self._log_tail() or error.hint,
                ) from None
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._tear_down(while_failing=exc_type is not None)

    def _run_as(self) -> tuple[str, ...]:
        """The prefix running server programs as SERVER_USER when drkit runs as root."""
        return server_user_prefix("the ephemeral PostgreSQL cluster")

    def _make_directory(self, run_as: tuple[str, ...]) -> None:
        """The cluster's private folder, leased before it exists."""
        parent = Path(choose_parent_directory(for_another_user=bool(run_as)))
        self._lease, self.directory = make_leased_folder(
            self.kind, parent, DIRECTORY_PREFIX, "ephemeral PostgreSQL in", plan=self.plan
        )
        if run_as:
            shutil.chown(self.directory, SERVER_USER, SERVER_USER)

    def _start(self) -> None:
        initdb = find_program("initdb", version_dir=self.major_version)
        pg_ctl = find_program("pg_ctl", version_dir=self.major_version)
        run_as = self._run_as()
        self._make_directory(run_as)
        self._initialize(run_as, initdb)
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = choose_free_port()
            try:
                run(make_start_command(run_as, pg_ctl, self.data_directory, self.port), timeout=90)
                break
            except ToolError:
                if attempt == START_ATTEMPTS:
                    raise
                log.debug("ephemeral PostgreSQL did not start on port %s; next port", self.port)
        log.info("started ephemeral PostgreSQL (port %s) in %s", self.port, self.directory)

    def _initialize(self, run_as: tuple[str, ...], initdb: str) -> None:
        """initdb with the superuser's password in a file only the server's user can read,
        removed right after, then drkit's settings."""
        assert self.directory is not None
        password_file = self.directory / PASSWORD_FILE
        descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(self.password.reveal() + "\n")
        try:
            if run_as:
                shutil.chown(password_file, SERVER_USER, SERVER_USER)
            initialize = make_initdb_command(run_as, initdb, self.data_directory, password_file)
            run(initialize, timeout=120)
        finally:
            password_file.unlink(missing_ok=True)
        settings = cluster_settings(self.directory, tcp=self.tcp)
        lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
        with (self.data_directory / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# drkit drill sandbox\n" + lines)

    def _log_tail(self) -> str:
        if self.directory is None:
            return ""
        with contextlib.suppress(OSError):
            lines = (self.directory / "server.log").read_text(errors="replace").splitlines()
            return lines[-1] if lines else ""
        return ""

    def _tear_down(self, *, while_failing: bool) -> None:
        """Stop the server (immediate mode), make sure no process of it is left, delete it."""
        if self.directory is None:
            if self._lease is not None:  # killed between the lease and the folder
                registry.release(self._lease)
            return
        directory = self.directory
        postmaster = self.postmaster_pid()
        if postmaster is not None:
            self.server_pids = [postmaster, *child_processes(postmaster)]
            with contextlib.suppress(ToolError, SandboxError):
                pg_ctl = find_program("pg_ctl", version_dir=self.major_version)
                stop = make_stop_command(self._run_as(), pg_ctl, directory / "data")
                run(stop, timeout=STOP_WAIT_SECONDS * 2)
        leftovers = wait_for_processes(self.server_pids)
        shutil.rmtree(directory, ignore_errors=True)
        self.directory, self.port, self.server_pids = None, None, []
        self._databases.clear()
        if leftovers or directory.exists():
            failure = SandboxError(
                f"ephemeral PostgreSQL in {directory} was not fully removed"
                + (f": processes {leftovers} survived SIGKILL" if leftovers else ""),
                hint=f"kill what is left of it and remove {directory} by hand, "
                "or let the next drkit command do it",
            )
            report_teardown_failure(failure, while_failing=while_failing)
        elif self._lease is not None:
            registry.release(self._lease)

    def postmaster_pid(self) -> int | None:
        """The server's pid, or None when no server of this cluster runs."""
        return postmaster_pid(self.data_directory)

    # --- targets ------------------------------------------------------------------------------

    def target_for(self, source: SourceSpec) -> Target:
        """A new, empty database named after the source, for the superuser."""
        if source.type != "postgresql":
            raise refuse_source_type(self, source)
        if source.name not in self._databases:
            name = database_name_for(source.name)
            with self._connected("postgres", f"create database {name}") as connection:
                connection.execute(f'CREATE DATABASE "{name}"')  # name: [a-z0-9_] only
            self._databases[source.name] = name
        # throwaway: the roles the snapshot names are created here for the drill
        return Target(self.url_for(self._databases[source.name]), self.password, throwaway=True)

    def reader_target_for(self, source: SourceSpec) -> Target:
        """The source's database for the read-only role, granted read access to everything
        restored there (call it after the restore)."""
        database = database_name_for(source.name)
        self.target_for(source)
        with self._connected("postgres", f"let checks read {database}") as server:
            if not self._has_reader:
                create_postgres_reader(server, READER, self.reader_password)
                # The cluster's own databases are no business of checks either.
                server.execute("REVOKE ALL ON DATABASE postgres, template1 FROM PUBLIC")
                self._has_reader = True
            with self._connected(database, f"let checks read {database}") as restored:
                grant_postgres_reads(server, restored, READER)
        return Target(self.url_for(database, user=READER, tcp=self.tcp), self.reader_password)

    @contextlib.contextmanager
    def _connected(self, database: str, doing: str) -> Iterator[psycopg.Connection[Any]]:
        """A superuser connection to ``database``; SandboxError saying what failed."""
        import psycopg

        try:
            with psycopg.connect(
                self.url_for(database),
                password=self.password.reveal(),
                autocommit=True,
                connect_timeout=10,
            ) as connection:
                yield connection
        except psycopg.Error as error:
            raise SandboxError(
                f"could not {doing} in the ephemeral cluster: {str(error).strip().splitlines()[0]}"
            ) from None

    def describe(self) -> str:
        where = f"socket and 127.0.0.1:{self.port}" if self.tcp else "socket only"
        return f"ephemeral PostgreSQL ({where}) in {self.directory}"
