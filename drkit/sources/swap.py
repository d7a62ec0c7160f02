"""Replacements: how each source type swaps a verified copy in for its target by renaming,
keeping the old target as a previous copy (``drkit.sources.base.Replacement``).

- SQLite: the staging file is ``<file>_drkit_restoring_<id>``; the old file is hard-linked to
  ``<file>_drkit_previous_<time>`` (with its journal files) and the new one renamed over it in
  one ``rename``, so the path never stops naming a whole database.
- files: the tree is staged in ``_drkit_restoring_<id>`` in the deepest folder holding all the
  source's paths under the target; each of those paths (and, for a path that is a symlink, the
  folder it points to, captured with it) is moved into ``_drkit_previous_<time>`` beside it and
  the staged one moved into its place (rolled back on failure).
- PostgreSQL and MariaDB: see ``postgresql_swap`` and ``mysql_swap``.

``make_replacement`` is the type-name table; ``remove_leftover_copy`` is the lease cleaner of
staging copies left by a restore killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drkit.errors import SourceError
from drkit.leases.registry import Lease
from drkit.plan.schema import SourceSpec
from drkit.secrets import SecretRef
from drkit.sources.base import PREVIOUS_MARK, RESTORING_MARK, Replacement, Target
from drkit.sources.tree_walk import archived_roots

log = logging.getLogger(__name__)
#: Files SQLite keeps beside a database; they move with it.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


class SwapUnsupported(SourceError):
    """The target holds what a rename cannot move; the restore loads in place instead, after
    the loaded copy proved the snapshot good."""


def require_mark(name: str) -> None:
    """Refuse to remove anything drkit did not name: the last guard before a delete."""
    if RESTORING_MARK not in name and PREVIOUS_MARK not in name:
        raise SourceError(f"refusing to remove {name}: not a copy drkit made beside a target")


class SqliteReplacement:
    """A database file, replaced by one atomic rename."""

    def refusal(self, target: Target) -> str | None:
        return None

    def exists(self, target: Target) -> bool:
        return os.path.lexists(target.location)

    def beside(self, target: Target, mark: str) -> Target:
        return Target(f"{target.location}{mark}")

    def swap(self, staged: Target, target: Target, previous: Target) -> bool:
        path, kept = target.location, previous.location
        existed = os.path.lexists(path)
        if existed:
            try:
                os.link(path, kept)  # the old file stays reachable under the new name
            except OSError:
                os.rename(path, kept)  # file systems without hard links: a moment without it
            for suffix in SQLITE_SIDECARS:
                if os.path.lexists(path + suffix):
                    os.rename(path + suffix, kept + suffix)
        os.replace(staged.location, path)
        return existed

    def remove(self, copy: Target) -> None:
        require_mark(os.path.basename(copy.location))
        for path in (copy.location, *(copy.location + suffix for suffix in SQLITE_SIDECARS)):
            Path(path).unlink(missing_ok=True)

    def removal_command(self, copy: Target) -> str:
        paths = [copy.location]
        paths += [copy.location + s for s in SQLITE_SIDECARS if os.path.lexists(copy.location + s)]
        return shlex.join(["rm", "-f", "--", *paths])


class FileTreeReplacement:
    """A files source's paths under a target directory, each replaced by a rename."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = roots

    def refusal(self, target: Target) -> str | None:
        return None

    def exists(self, target: Target) -> bool:
        return any(os.path.lexists(os.path.join(target.location, root)) for root in self.roots)

    def beside(self, target: Target, mark: str) -> Target:
        # Next to the source's paths (their deepest common folder), so that renames between
        # them and the copy stay on one file system: /etc/app -> /etc/_drkit_restoring_<id>.
        parents = [os.path.dirname(root) for root in self.roots]
        common = os.path.commonpath(parents) if parents else ""
        return Target(os.path.join(target.location, common, mark))

    def swap(self, staged: Target, target: Target, previous: Target) -> bool:
        moves = []
        # a root that is a symlink was captured with its target folder: both move
        for root in archived_roots(staged.location, self.roots):
            current = os.path.join(target.location, root)
            if os.path.lexists(current):
                moves.append((current, os.path.join(previous.location, root)))
            incoming = os.path.join(staged.location, root)
            if os.path.lexists(incoming):
                moves.append((incoming, current))
        self._check_one_file_system(staged, [destination for _, destination in moves])
        done: list[tuple[str, str]] = []
        try:
            for origin, destination in moves:
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                os.rename(origin, destination)
                done.append((origin, destination))
        except BaseException:
            for origin, destination in reversed(done):  # put back what already moved
                with contextlib.suppress(OSError):
                    os.rename(destination, origin)
            raise
        return any(destination.startswith(previous.location + os.sep) for _, destination in done)

    @staticmethod
    def _check_one_file_system(staged: Target, destinations: list[str]) -> None:
        device = os.stat(staged.location).st_dev
        for destination in destinations:
            parent = Path(destination).parent
            while not parent.exists():
                parent = parent.parent
            if parent.stat().st_dev != device:
                raise SourceError(
                    f"{destination} is on another file system than the staging copy "
                    f"{staged.location}; it cannot be swapped in by renaming",
                    hint="restore with --to NAME=DIR to a directory on the same file system",
                )

    def remove(self, copy: Target) -> None:
        require_mark(os.path.basename(copy.location.rstrip(os.sep)))
        if os.path.isdir(copy.location) and not os.path.islink(copy.location):
            shutil.rmtree(copy.location)
        else:
            Path(copy.location).unlink(missing_ok=True)

    def removal_command(self, copy: Target) -> str:
        return shlex.join(["rm", "-rf", "--", copy.location])


def _postgresql(spec: Any) -> Replacement:
    from drkit.sources.postgresql_swap import PostgresqlReplacement

    return PostgresqlReplacement()


def _mysql(spec: Any) -> Replacement:
    from drkit.sources.mysql_swap import MysqlReplacement

    return MysqlReplacement()


def _files(spec: Any) -> Replacement:
    from drkit.sources.files import member_name

    return FileTreeReplacement([member_name(path) for path in spec.paths] if spec else [])


#: Source type name -> factory of its Replacement (the spec is None for a lease cleaner).
REPLACEMENT_FACTORIES: dict[str, Callable[[Any], Replacement]] = {
    "postgresql": _postgresql,
    "mysql": _mysql,
    "sqlite": lambda spec: SqliteReplacement(),
    "files": _files,
}


def make_replacement(spec: SourceSpec) -> Replacement:
    """The Replacement for one of a plan's sources."""
    return REPLACEMENT_FACTORIES[spec.type](spec)


def lease_data(spec: SourceSpec, staged: Target) -> dict[str, Any]:
    """What ``remove_leftover_copy`` needs: where the copy is and the password's reference."""
    return {
        "type": spec.type,
        "location": staged.location,
        "password": getattr(spec, "password", None),
    }


def remove_leftover_copy(lease: Lease, plan: Any) -> None:
    """Cleaner of ``restoring-copy`` leases: remove the half-loaded copy of a killed restore."""
    data = lease.data
    reference = data.get("password")
    password = SecretRef(reference).resolve() if reference else None
    replacement = REPLACEMENT_FACTORIES[str(data["type"])](None)
    replacement.remove(Target(str(data["location"]), password))
