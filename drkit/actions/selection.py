"""Naming a snapshot on the command line: its id, an unambiguous prefix of it, ``latest``, or
``latest~N`` (the Nth before the newest, as git names commits), so an on-call engineer can say
"the one before the newest" without copying an id.

Relative names move when a backup runs, so commands that change something (restore) take
ids only; ``info`` and ``diff`` print the id each name resolved to."""

from __future__ import annotations

import re
from collections.abc import Sequence

from drkit.actions.resources import Resources
from drkit.errors import SnapshotNotFound, UsageError
from drkit.repository import SnapshotEntry, find_snapshots

LATEST = re.compile(r"latest(?:~(?P<back>\d+))?")
#: at most this many candidates are named when a prefix matches several snapshots
SHOWN_CANDIDATES = 5
NAMES_HINT = "give a snapshot id (or enough of its start to be unique), latest, or latest~1"


def resolve_snapshot(entries: Sequence[SnapshotEntry], name: str) -> SnapshotEntry:
    """The entry ``name`` names among ``entries``: an exact id first, then ``latest[~N]``,
    then a prefix that only one id starts with. SnapshotNotFound when none matches, UsageError
    when a prefix is ambiguous or the name is empty."""
    name = name.strip()
    if not name:
        raise UsageError("the snapshot name is empty", hint=NAMES_HINT)
    for entry in entries:
        if entry.snapshot_id == name:
            return entry
    newest_first = sorted(entries, key=lambda entry: entry.snapshot_id, reverse=True)
    relative = LATEST.fullmatch(name)
    if relative is not None:
        back = int(relative["back"] or 0)
        if back < len(newest_first):
            return newest_first[back]
        raise SnapshotNotFound(
            f"{name} names the snapshot {back} before the newest, but only "
            f"{len(newest_first)} snapshot(s) are listed"
        )
    matches = [entry for entry in newest_first if entry.snapshot_id.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(entry.snapshot_id for entry in matches[:SHOWN_CANDIDATES])
        more = (
            f" and {len(matches) - SHOWN_CANDIDATES} more"
            if len(matches) > SHOWN_CANDIDATES
            else ""
        )
        raise UsageError(
            f"snapshot {name!r} is ambiguous: {len(matches)} snapshots start with it "
            f"({shown}{more})",
            hint="give more of the id",
        )
    raise SnapshotNotFound(f"no snapshot is named or starts with {name!r}")


def locate_snapshot(
    resources: Resources, name: str, *, store_name: str | None = None
) -> SnapshotEntry:
    """The snapshot ``name`` names: among the catalog's snapshots, or one store's with
    ``store_name``. An id or prefix the catalog does not know is looked for in the stores (a
    snapshot it never recorded, or lost); ``latest`` stays the catalog's newest."""
    repository = resources.repository
    entries = find_snapshots(repository, resources.catalog, store_name=store_name)
    try:
        return resolve_snapshot(entries, name)
    except SnapshotNotFound:
        from_catalog = any(entry.origin == "catalog" for entry in entries)
        if store_name is not None or not from_catalog or LATEST.fullmatch(name.strip()):
            raise
    return resolve_snapshot(find_snapshots(repository, None), name)
