"""Private temporary folders and files, leased: made 0700/0600, removed on every way out, and
removed by the next command when their process was killed first."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from drkit.leases import registry
from drkit.leases.kinds import PlanLike
from drkit.leases.registry import Lease

log = logging.getLogger(__name__)


def make_leased_folder(
    kind: str, parent: Path, prefix: str, what: str, *, plan: str | None = None
) -> tuple[Lease, Path]:
    """A new folder ``<parent>/<prefix><lease id>``, mode 0700, leased as ``kind`` before it
    exists (``what`` says what it is for, in the lease's description)."""
    lease_id = registry.new_lease_id()
    path = parent / f"{prefix}{lease_id}"
    description = f"{what} {path}"
    data = {"path": str(path)}
    lease = registry.take(kind, description, plan=plan, data=data, lease_id=lease_id)
    path.mkdir(mode=0o700)
    return lease, path


@contextlib.contextmanager
def private_directory(
    prefix: str, *, parent: Path | str | None = None, plan: str | None = None
) -> Iterator[Path]:
    """A new folder ``<parent>/<prefix><lease id>`` (parent: the temporary folder), mode 0700,
    removed with its contents when the block ends. Its lease is released only once it is
    gone, so a folder that could not be removed is tried again by the next command."""
    folder = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    lease, path = make_leased_folder("directory", folder, prefix, "temporary folder", plan=plan)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            registry.release(lease)
        else:
            log.warning("could not remove %s; the next drkit command will try again", path)


def lease_file(path: Path, *, plan: str | None = None) -> Lease:
    """Record that ``path``, a temporary file drkit made beside a target, must not outlive
    this process; release the lease once the file is renamed into place or removed."""
    return registry.take("file", f"temporary file {path}", plan=plan, data={"path": str(path)})


def remove_leftover_directory(lease: Lease, plan: PlanLike | None) -> None:
    """Cleaner of ``directory`` leases."""
    path = Path(lease.data["path"])
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        raise OSError(f"{path} could not be removed")


def remove_leftover_file(lease: Lease, plan: PlanLike | None) -> None:
    """Cleaner of ``file`` leases."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lease.data["path"])
