"""A throwaway PostgreSQL cluster for drills: initdb + pg_ctl in a temporary folder, listening
on 127.0.0.1 and a unix socket in that folder only, trust authentication, no fsync (it lives
for one drill). Stopped with ``pg_ctl -m immediate`` and deleted on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from drkit.errors import SandboxError, ToolError
from drkit.execute import Command, find_program, run
from drkit.plan.schema import SourceSpec
from drkit.sandboxes.base import database_name_for, refuse_source_type, report_teardown_failure
from drkit.sources.base import Target

log = logging.getLogger(__name__)

#: PostgreSQL refuses to run as root; as root, the cluster runs as this user.
SERVER_USER = "postgres"
START_ATTEMPTS = 3  # a free port may be taken between choosing it and binding it
STOP_WAIT_SECONDS = 15.0
#: Settings for speed and isolation; durability is pointless for a cluster this short-lived.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "40",
    "logging_collector": "off",
}


def choose_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def is_process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, waiting to be reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"


def child_processes(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (the postmaster's backends and workers)."""
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat_file.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(stat_file.parent.name))
    return children


def is_traversable_by_others(path: Path) -> bool:
    """True when a user other than the owner may reach entries inside ``path``."""
    return all(os.stat(folder).st_mode & stat.S_IXOTH for folder in (path, *path.parents))


def choose_parent_directory() -> str:
    """Where to put a cluster run by SERVER_USER: the temporary folder when that user can
    reach into it (a private TMPDIR cannot), else /tmp."""
    for candidate in (tempfile.gettempdir(), "/tmp"):  # noqa: S108 - mkdtemp makes it private
        if is_traversable_by_others(Path(candidate)):
            return candidate
    raise SandboxError(
        f"no temporary folder the {SERVER_USER} user can reach",
        hint="set TMPDIR to a folder others may traverse (chmod o+x), such as /tmp",
    )


def make_initdb_command(run_as: tuple[str, ...], initdb: str, data: Path) -> Command:
    """initdb for a sandbox: superuser postgres, trust auth, no fsync of the new files."""
    # C locale: the same collation wherever the drill runs, whatever locales are installed.
    options = ("--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
    return Command((*run_as, initdb, "-D", str(data), "-U", "postgres", *options))


def make_start_command(run_as: tuple[str, ...], pg_ctl: str, data: Path, port: int) -> Command:
    """pg_ctl start, waiting until the server accepts connections; log next to the data."""
    log_file = str(data.parent / "server.log")
    argv = (pg_ctl, "-D", str(data), "-l", log_file, "-w", "-t", "60", "-o", f"-p {port}")
    return Command((*run_as, *argv, "start"))


def make_stop_command(run_as: tuple[str, ...], pg_ctl: str, data: Path) -> Command:
    """pg_ctl stop without a shutdown checkpoint: the cluster is deleted right after."""
    return Command((*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"))


class EphemeralPostgres:
    """A PostgreSQL cluster that exists for the duration of a ``with`` block."""

    kind = "ephemeral-postgresql"

    def __init__(self, major_version: str | None = None):
        self.major_version = major_version
        self.directory: Path | None = None
        self.port: int | None = None
        self.server_pids: list[int] = []
        self._databases: dict[str, str] = {}

    @property
    def data_directory(self) -> Path:
        if self.directory is None:
            raise SandboxError("the ephemeral cluster is not running (use it in a with block)")
        return self.directory / "data"

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

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
        if os.geteuid() != 0:
            return ()
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise SandboxError(
                f"running as root, but there is no {SERVER_USER} user to run the "
                "ephemeral PostgreSQL cluster",
                hint="install the PostgreSQL server package, which creates it, "
                "or run drkit as an unprivileged user",
            ) from None
        return (find_program("runuser"), "-u", SERVER_USER, "--")

    def _start(self) -> None:
        initdb = find_program("initdb", version_dir=self.major_version)
        pg_ctl = find_program("pg_ctl", version_dir=self.major_version)
        run_as = self._run_as()
        parent = choose_parent_directory() if run_as else None
        self.directory = Path(tempfile.mkdtemp(prefix="drkit-sandbox-pg-", dir=parent))
        if run_as:
            shutil.chown(self.directory, SERVER_USER, SERVER_USER)
        run(make_initdb_command(run_as, initdb, self.data_directory), timeout=120)
        self._write_settings()
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = choose_free_port()
            try:
                run(make_start_command(run_as, pg_ctl, self.data_directory, self.port), timeout=90)
                break
            except ToolError:
                if attempt == START_ATTEMPTS:
                    raise
                log.debug("ephemeral PostgreSQL did not start on port %s; next port", self.port)
        log.info("started ephemeral PostgreSQL on 127.0.0.1:%s in %s", self.port, self.directory)

    def _write_settings(self) -> None:
        settings = {**SETTINGS, "unix_socket_directories": f"'{self.directory}'"}
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
            return
        directory = self.directory
        postmaster = self.postmaster_pid()
        if postmaster is not None:
            self.server_pids = [postmaster, *child_processes(postmaster)]
            with contextlib.suppress(ToolError, SandboxError):
                pg_ctl = find_program("pg_ctl", version_dir=self.major_version)
                stop = make_stop_command(self._run_as(), pg_ctl, directory / "data")
                run(stop, timeout=STOP_WAIT_SECONDS * 2)
        leftovers = self._stop_leftover_processes()
        shutil.rmtree(directory, ignore_errors=True)
        self.directory, self.port, self.server_pids = None, None, []
        self._databases.clear()
        if leftovers or directory.exists():
            failure = SandboxError(
                f"ephemeral PostgreSQL in {directory} was not fully removed"
                + (f": processes {leftovers} survived SIGKILL" if leftovers else ""),
                hint=f"kill what is left of it and remove {directory} by hand",
            )
            report_teardown_failure(failure, while_failing=while_failing)

    def postmaster_pid(self) -> int | None:
        """The server's pid from postmaster.pid, or None when no server of this data folder runs
        (a stale pid file's number may belong to an unrelated process by now)."""
        try:
            pid = int((self.data_directory / "postmaster.pid").read_text().split()[0])
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            return None
        return pid if os.fsencode(str(self.data_directory)) in command_line else None

    def _stop_leftover_processes(self) -> list[int]:
        """Wait for the server's processes to end, SIGKILL stragglers; the pids still alive."""
        for kill in (False, True):
            deadline = time.monotonic() + STOP_WAIT_SECONDS
            while (alive := [pid for pid in self.server_pids if is_process_alive(pid)]) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.05)
            if not alive or kill:
                return alive
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return []

    # --- targets ------------------------------------------------------------------------------

    def target_for(self, source: SourceSpec) -> Target:
        """A new, empty database named after the source."""
        if source.type != "postgresql":
            raise refuse_source_type(self, source)
        if source.name not in self._databases:
            name = database_name_for(source.name)
            self._create_database(name)
            self._databases[source.name] = f"{self.server_url}/{name}"
        return Target(self._databases[source.name])

    def _create_database(self, name: str) -> None:
        import psycopg

        try:
            with psycopg.connect(
                f"{self.server_url}/postgres", autocommit=True, connect_timeout=10
            ) as connection:
                connection.execute(f'CREATE DATABASE "{name}"')  # name: [a-z0-9_] only
        except psycopg.Error as error:
            raise SandboxError(
                f"could not create database {name} in the ephemeral cluster: "
                f"{str(error).strip().splitlines()[0]}"
            ) from None

    def describe(self) -> str:
        return f"ephemeral PostgreSQL on 127.0.0.1:{self.port} ({self.directory})"
