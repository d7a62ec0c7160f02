"""Processes as /proc shows them: who owns a lease (host, boot, pid and the pid's start time,
so a reused pid is never mistaken for its first owner), whether that owner still runs, and
finding and ending processes drkit started.

Linux only, like the rest of drkit's process handling.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

PROC = Path("/proc")
#: How long ending processes may take before the caller hears which survived.
KILL_WAIT_SECONDS = 10.0
#: /proc gives process start times in clock ticks after boot, and the boot time in whole
#: seconds: a run record this much older than its pid's process belongs to another process.
START_TIME_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class ProcessIdentity:
    """One process, told apart from any later process that reuses its pid."""

    host: str
    boot_id: str
    pid: int
    start_ticks: int

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "boot_id": self.boot_id,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ProcessIdentity:
        return cls(
            str(document["host"]),
            str(document["boot_id"]),
            int(document["pid"]),
            int(document["start_ticks"]),
        )


@cache
def boot_id() -> str:
    """This boot's random id: a lease from before a reboot names a process that is gone."""
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def read_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot; None when no such process runs."""
    fields = read_stat(pid)
    return int(fields[19]) if fields is not None else None


def current_identity() -> ProcessIdentity:
    """This process (read anew after a fork)."""
    pid = os.getpid()
    return ProcessIdentity(socket.gethostname(), boot_id(), pid, start_ticks(pid) or 0)


def is_process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, waiting to be reaped, counts as gone)."""
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: it exists
        return True
    return state != "Z"


def is_owner_alive(owner: ProcessIdentity) -> bool:
    """False only when ``owner`` has certainly ended. A process of another host cannot be
    checked from here and counts as alive: its own host's next command cleans up after it."""
    if owner.host != socket.gethostname():
        return True
    if owner.boot_id != boot_id():
        return False
    return is_process_alive(owner.pid) and start_ticks(owner.pid) == owner.start_ticks


def process_started_at(pid: int) -> datetime | None:
    """When ``pid`` started, by the wall clock; None when no such process runs."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    return datetime.fromtimestamp(boot_time() + ticks / os.sysconf("SC_CLK_TCK"), UTC)


@cache
def boot_time() -> int:
    """When this machine booted, in seconds since the epoch (``btime`` of /proc/stat)."""
    for line in (PROC / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    return 0


def is_run_owner_gone(host: str, pid: int, started_at: datetime) -> bool:
    """True when the process that recorded a run at ``started_at`` has ended: no process of
    that pid runs on this host, or the one that does started after the run (a reused pid)."""
    if host != socket.gethostname():
        return False
    if not is_process_alive(pid):
        return True
    started = process_started_at(pid)
    moment = started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC)
    return started is None or started > moment + START_TIME_SLACK


def child_processes(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (a server's backends and workers)."""
    children = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = read_stat(int(entry.name))
            if fields is not None and int(fields[1]) == parent:
                children.append(int(entry.name))
    return children


def processes_marked(name: str, value: str) -> list[int]:
    """Pids whose environment holds ``name=value``: every process drkit started with that
    marker, and their descendants, even those that left drkit's process group. Processes of
    other users are not readable without privileges, and drkit never starts such ones
    except through runuser (whose environment it also gives)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def processes_naming(path: Path) -> list[int]:
    """Pids whose command line or environment names ``path`` or something under it: initdb,
    pg_ctl and the server of a sandbox folder, whatever stage a killed drill left them in,
    and the ``postgres --boot``/``--single`` backends initdb runs, which find their data
    folder through ``PGDATA`` alone."""
    needle = os.fsencode(str(path))

    def names(value: bytes) -> bool:
        return value == needle or value.startswith(needle + b"/")

    def read(entry: Path, name: str) -> list[bytes]:
        with contextlib.suppress(OSError):  # gone, or another user's environment
            return (entry / name).read_bytes().split(b"\0")
        return []

    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if any(names(argument) for argument in read(entry, "cmdline")) or any(
            names(variable.partition(b"=")[2]) for variable in read(entry, "environ")
        ):
            found.append(int(entry.name))
    return found


def descendant_processes(roots: Iterable[int]) -> set[int]:
    """``roots`` and every process whose parent chain leads to one of them (at this instant)."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = read_stat(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    found = set(roots)
    while True:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        if not more:
            return found
        found |= more


def end_processes(pids: Iterable[int], wait: float = KILL_WAIT_SECONDS) -> list[int]:
    """SIGKILL each process and wait for them to go; the pids still alive afterwards."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while (alive := [pid for pid in pids if is_process_alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


def end_process_group(leader: int) -> None:
    """SIGKILL every process of the group ``leader`` leads (no error when it is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)
