"""A command's private scratch folder: ``$TMPDIR/drkit-<lease id>``, mode 0700.

While a command works on a plan, every temporary file drkit makes without naming a folder
(staged archives, SQLite copies, option and password files) lands there, and so do its
children's (their TMPDIR: restic's temporary packs, for one). Each child also carries the
scratch's id in its environment (``DRKIT_OWNER``), so that when the command is killed the
next one finds its children, and theirs, even those that left drkit's process group, ends
them and removes the folder.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from drkit.leases import registry
from drkit.leases.folders import make_leased_folder
from drkit.leases.kinds import PlanLike
from drkit.leases.processes import end_processes, processes_marked
from drkit.leases.registry import Lease

log = logging.getLogger(__name__)
SCRATCH_PREFIX = "drkit-scratch-"
#: the environment variable marking every child of a command with its scratch's lease id
OWNER_VARIABLE = "DRKIT_OWNER"

_active: Lease | None = None


def owner_marker() -> dict[str, str]:
    """``{DRKIT_OWNER: id}`` for a child's environment while a scratch folder is in use."""
    return {OWNER_VARIABLE: _active.id} if _active is not None else {}


@contextlib.contextmanager
def private_scratch() -> Iterator[Path]:
    """Use a new private scratch folder for this process's temporary files until the block
    ends; then remove it. Nested use keeps the outer folder."""
    global _active
    if _active is not None:
        yield Path(_active.data["path"])
        return
    parent = Path(tempfile.gettempdir())
    lease, path = make_leased_folder("process", parent, SCRATCH_PREFIX, "scratch folder")
    saved, tempfile.tempdir, _active = tempfile.tempdir, str(path), lease
    try:
        yield path
    finally:
        tempfile.tempdir, _active = saved, None
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            registry.release(lease)


def remove_leftover_scratch(lease: Lease, plan: PlanLike | None) -> None:
    """Cleaner of ``process`` leases: end the dead command's children, remove its folder."""
    survivors = end_processes(processes_marked(OWNER_VARIABLE, lease.id))
    if survivors:
        raise OSError(f"processes {survivors} survived SIGKILL")
    path = Path(lease.data["path"])
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        raise OSError(f"{path} could not be removed")
