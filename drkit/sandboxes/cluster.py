"""The parts of a throwaway PostgreSQL cluster that need no running sandbox: its folder, the
initdb/pg_ctl commands (pure), finding and ending its processes, and the cleaner that removes
one whose drill was killed."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from drkit.errors import SandboxError
from drkit.execute import Command, find_program
from drkit.leases.processes import (
    descendant_processes,
    end_processes,
    is_process_alive,
    processes_naming,
)
from drkit.leases.registry import Lease

if TYPE_CHECKING:
    from drkit.plan.schema import Plan

log = logging.getLogger(__name__)

#: PostgreSQL refuses to run as root; as root, the cluster runs as this user.
SERVER_USER = "postgres"
STOP_WAIT_SECONDS = 15.0
#: looks for a killed drill's leftover processes, each ending what it found
CLEANUP_ROUNDS = 5
DIRECTORY_PREFIX = "drkit-sandbox-pg-"
PASSWORD_FILE = "superuser-password"
#: A unix socket's path is limited to 107 bytes; the cluster's adds this much to its parent's
#: (/drkit-sandbox-pg-<12 hex>/.s.PGSQL.<port>).
SOCKET_PATH_LIMIT = 107
SOCKET_PATH_OVERHEAD = 50
#: Settings for speed and isolation; durability is pointless for a cluster this short-lived.
#: No TCP unless asked for (see cluster_settings); the socket's folder is private.
SETTINGS = {
    "listen_addresses": "''",
    "unix_socket_permissions": "0700",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "40",
    "logging_collector": "off",
}


def server_user_prefix(what: str) -> tuple[str, ...]:
    """The prefix running server programs as SERVER_USER when drkit runs as root
    (PostgreSQL refuses to run as root); nothing otherwise."""
    if os.geteuid() != 0:
        return ()
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise SandboxError(
            f"running as root, but there is no {SERVER_USER} user to run {what}",
            hint="install the PostgreSQL server package, which creates it, "
            "or run drkit as an unprivileged user",
        ) from None
    return (find_program("runuser"), "-u", SERVER_USER, "--")


def choose_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def is_traversable_by_others(path: Path) -> bool:
    """True when a user other than the owner may reach entries inside ``path``."""
    return all(os.stat(folder).st_mode & stat.S_IXOTH for folder in (path, *path.parents))


def choose_parent_directory(*, for_another_user: bool) -> str:
    """Where to put a cluster's folder: the temporary folder, unless the socket's path would
    be too long there, or the cluster runs as SERVER_USER, who cannot reach into a private
    temporary folder; then TMPDIR, else /tmp (the cluster's own folder is private anyway)."""
    # /tmp: the cluster's folder is 0700
    candidates = (tempfile.gettempdir(), os.environ.get("TMPDIR") or "/tmp", "/tmp")  # noqa: S108
    for candidate in candidates:
        fits = len(candidate) + SOCKET_PATH_OVERHEAD <= SOCKET_PATH_LIMIT
        if fits and (not for_another_user or is_traversable_by_others(Path(candidate))):
            return candidate
    raise SandboxError(
        f"no temporary folder the {SERVER_USER} user can reach",
        hint="set TMPDIR to a folder others may traverse (chmod o+x), such as /tmp",
    )


def cluster_settings(directory: Path, *, tcp: bool) -> dict[str, str]:
    """postgresql.conf lines: the socket in the cluster's own 0700 folder, and TCP on
    127.0.0.1 (password authentication, like the socket) only when ``tcp``."""
    settings = {**SETTINGS, "unix_socket_directories": f"'{directory}'"}
    if tcp:
        settings["listen_addresses"] = "'127.0.0.1'"
    return settings


def make_initdb_command(
    run_as: tuple[str, ...], initdb: str, data: Path, password_file: Path
) -> Command:
    """initdb for a sandbox: superuser postgres whose password is in ``password_file``, which
    every connection must give (scram-sha-256, socket and TCP alike: never trust)."""
    # C locale: the same collation wherever the drill runs, whatever locales are installed.
    options = (
        "--auth=scram-sha-256",
        f"--pwfile={password_file}",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    )
    return Command((*run_as, initdb, "-D", str(data), "-U", "postgres", *options))


def make_start_command(run_as: tuple[str, ...], pg_ctl: str, data: Path, port: int) -> Command:
    """pg_ctl start, waiting until the server accepts connections; log next to the data."""
    log_file = str(data.parent / "server.log")
    argv = (pg_ctl, "-D", str(data), "-l", log_file, "-w", "-t", "60", "-o", f"-p {port}")
    return Command((*run_as, *argv, "start"))


def make_stop_command(run_as: tuple[str, ...], pg_ctl: str, data: Path) -> Command:
    """pg_ctl stop without a shutdown checkpoint: the cluster is deleted right after."""
    return Command((*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"))


def postmaster_pid(data: Path) -> int | None:
    """The pid of the server of ``data``, from postmaster.pid; None when none runs (a stale
    pid file's number may belong to an unrelated process by now)."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError, ValueError):
        return None
    return pid if os.fsencode(str(data)) in command_line else None


def wait_for_processes(pids: list[int]) -> list[int]:
    """Wait for processes to end, SIGKILL stragglers; the pids still alive afterwards."""
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while (alive := [pid for pid in pids if is_process_alive(pid)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return end_processes(alive) if alive else []


def remove_leftover_cluster(lease: Lease, plan: Plan | None) -> None:
    """Cleaner of ``ephemeral-postgresql`` leases: SIGKILL the server of a killed drill with
    all its processes (there is nothing in it to keep), then delete its folder. A drill killed
    while initdb or pg_ctl ran leaves them running without it, still writing into the folder
    (and no postmaster.pid yet): every process naming the folder (in its command line or its
    ``PGDATA``) goes too, with every process it started."""
    directory = Path(lease.data["path"])
    for _ in range(CLEANUP_ROUNDS):  # initdb may start its next step while we look
        postmaster = postmaster_pid(directory / "data")
        roots = [*processes_naming(directory), *([postmaster] if postmaster is not None else [])]
        doomed = descendant_processes(roots)
        if not doomed:
            break
        survivors = end_processes(sorted(doomed))
        if survivors:
            raise SandboxError(f"processes {survivors} of {directory} survived SIGKILL")
    shutil.rmtree(directory, ignore_errors=True)
    if directory.exists():
        raise SandboxError(f"could not remove {directory}")
