"""A PostgreSQL cluster recovered from a physical base backup: its recovery settings, starting
it, and waiting until it has replayed WAL to the target and promoted itself.

The settings go into ``postgresql.auto.conf`` between two marker lines (they override the
source's ``postgresql.conf``, which came with the base backup), and are removed again once the
server has promoted. A base backup of a server whose configuration lives outside its data
directory (Debian's /etc/postgresql) has no ``postgresql.conf`` or ``pg_hba.conf``: minimal
ones are written (local connections with peer authentication, 127.0.0.1 with a password).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drkit.errors import SandboxError, ToolError
from drkit.execute import Command, find_program, run
from drkit.leases.processes import child_processes
from drkit.sandboxes.cluster import (
    SERVER_USER,
    postmaster_pid,
    server_user_prefix,
    wait_for_processes,
)

log = logging.getLogger(__name__)

BEGIN_MARK = "# drkit recovery settings begin"
END_MARK = "# drkit recovery settings end"
LOG_NAME = "drkit-recovery.log"
TARGET_NOT_REACHED = "recovery ended before configured recovery target was reached"
MINIMAL_HBA = "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n"


@dataclass(frozen=True)
class RecoveryTarget:
    """Where replay stops: a moment (with or without transactions committed exactly then),
    or the end of the WAL the stores hold (``moment`` None)."""

    moment: datetime | None
    inclusive: bool = True


def run_as_prefix() -> tuple[str, ...]:
    """As root, the server runs as SERVER_USER (PostgreSQL refuses root)."""
    return server_user_prefix("the restored PostgreSQL server")


def hand_over(path: Path) -> None:
    """As root, give ``path`` (and everything in it) to the server's user."""
    if os.geteuid() != 0:
        return
    shutil.chown(path, SERVER_USER, SERVER_USER)
    for folder, folders, files in os.walk(path):
        for name in (*folders, *files):
            shutil.chown(os.path.join(folder, name), SERVER_USER, SERVER_USER)


def is_reachable_by_server_user(path: Path) -> bool:
    """True when SERVER_USER may traverse ``path`` and every folder above it."""
    server_uid = pwd.getpwnam(SERVER_USER).pw_uid
    for folder in (path, *path.parents):
        status = os.stat(folder)
        if not (status.st_mode & 0o001 or (status.st_uid == server_uid and status.st_mode & 0o100)):
            return False
    return True


def recovery_lines(
    target: RecoveryTarget, restore_command: str, port: int, socket_folder: Path, *, tcp: bool
) -> list[str]:
    """The settings, pure: ``restore_command``, target, promote at the end, and the server's
    own port and socket; no archiving or replication of the restored copy."""
    lines = [
        f"restore_command = '{_quote(restore_command)}'",
        "recovery_target_timeline = 'latest'",
        "recovery_target_action = 'promote'",
        f"port = {port}",
        f"listen_addresses = '{'127.0.0.1' if tcp else ''}'",
        f"unix_socket_directories = '{_quote(str(socket_folder))}'",
        "archive_mode = off",
        "primary_conninfo = ''",
        "primary_slot_name = ''",
        "hot_standby = off",  # no connection before the target is reached and promoted
    ]
    if target.moment is not None:
        moment = target.moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        lines.append(f"recovery_target_time = '{moment}'")
        lines.append(f"recovery_target_inclusive = {'on' if target.inclusive else 'off'}")
    return lines


def _quote(value: str) -> str:
    return value.replace("'", "''")


def write_settings(data: Path, lines: list[str]) -> None:
    """Put drkit's block into postgresql.auto.conf (replacing an earlier one), add the
    configuration files a base backup may lack, and ask for recovery (recovery.signal)."""
    if not (data / "postgresql.conf").exists():
        (data / "postgresql.conf").write_text(
            "# written by drkit: the source kept its own elsewhere\n"
        )
    if not (data / "pg_hba.conf").exists():
        (data / "pg_hba.conf").write_text(MINIMAL_HBA)
    auto = data / "postgresql.auto.conf"
    kept = remove_block(auto.read_text() if auto.exists() else "")
    auto.write_text(kept + "\n".join([BEGIN_MARK, *lines, END_MARK]) + "\n")
    (data / "recovery.signal").write_text("")
    for leftover in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        (data / leftover).unlink(missing_ok=True)


def remove_block(text: str) -> str:
    """``text`` without drkit's block."""
    kept, inside = [], False
    for line in text.splitlines(keepends=True):
        if line.strip() == BEGIN_MARK:
            inside = True
        elif line.strip() == END_MARK:
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


def start(data: Path, environment: dict[str, str], timeout: float) -> None:
    """pg_ctl start, waiting until the server accepts connections (after promotion, since
    hot_standby is off) or gives up; ToolError when it does not start."""
    pg_ctl = find_program("pg_ctl", version_dir=server_major(data))
    argv = (pg_ctl, "-D", str(data), "-l", str(data / LOG_NAME), "-w", "-t", str(int(timeout)))
    run(Command((*run_as_prefix(), *argv, "start"), env=environment), timeout=timeout + 30)


def server_major(data: Path) -> str | None:
    with contextlib.suppress(OSError):
        return (data / "PG_VERSION").read_text().strip()
    return None


def wait_until_promoted(data: Path, timeout: float) -> None:
    """Promotion removes recovery.signal; SandboxError when the server stops or time runs out."""
    deadline = time.monotonic() + timeout
    while (data / "recovery.signal").exists() or server_state(data) != "ready":
        if postmaster_pid(data) is None:
            raise SandboxError(f"the recovered server stopped: {log_tail(data)}")
        if time.monotonic() > deadline:
            raise SandboxError(f"recovery did not finish within {timeout:.0f}s: {log_tail(data)}")
        time.sleep(0.1)


def server_state(data: Path) -> str | None:
    """The postmaster's status (``starting``, ``ready``, ``standby``, ``stopping``): the
    eighth line of postmaster.pid."""
    with contextlib.suppress(OSError, IndexError):
        return (data / "postmaster.pid").read_text().splitlines()[7].strip()
    return None


def log_tail(data: Path, lines: int = 1) -> str:
    with contextlib.suppress(OSError):
        text = (data / LOG_NAME).read_text(errors="replace").strip().splitlines()
        interesting = [line for line in text if "FATAL" in line or "PANIC" in line]
        return " | ".join((interesting or text)[-lines:])
    return "no server log"


def target_not_reached(data: Path) -> bool:
    with contextlib.suppress(OSError):
        return TARGET_NOT_REACHED in (data / LOG_NAME).read_text(errors="replace")
    return False


def clear_log(data: Path) -> None:
    (data / LOG_NAME).unlink(missing_ok=True)


def finish_recovery(data: Path) -> None:
    """Once promoted: drkit's settings go from postgresql.auto.conf (they take effect at the
    next restart; the restore_command's socket is gone by then anyway)."""
    auto = data / "postgresql.auto.conf"
    with contextlib.suppress(OSError):
        auto.write_text(remove_block(auto.read_text()))


def stop(data: Path, *, immediate: bool = False) -> None:
    """Stop the server (fast, or immediate for a throwaway one); make sure it is gone."""
    postmaster = postmaster_pid(data)
    if postmaster is None:
        return
    pids = [postmaster, *child_processes(postmaster)]
    with contextlib.suppress(ToolError, SandboxError):
        pg_ctl = find_program("pg_ctl", version_dir=server_major(data))
        mode = "immediate" if immediate else "fast"
        run(
            Command((*run_as_prefix(), pg_ctl, "-D", str(data), "-m", mode, "-w", "stop")),
            timeout=60,
        )
    survivors = wait_for_processes(pids)
    if survivors:
        raise SandboxError(f"processes {survivors} of the server on {data} survived SIGKILL")
