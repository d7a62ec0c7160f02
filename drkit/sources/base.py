"""The Source interface: something a plan protects (a database, a config tree) that can be
captured to a stream, fingerprinted, and restored from a stream."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable

from drkit.secrets import Secret

#: A fingerprint is plain JSON, stored in manifests, e.g.
#: {"tables": {"public.orders": 1200}, "schema_sha256": "...", "server_version": "15.4"}
#: or {"files": {"etc/app.yaml": "sha256..."}}.
Fingerprint = dict[str, Any]
#: The entry under "tables" of a PostgreSQL fingerprint that counts large objects: compared
#: like a table's rows, but not a table.
LARGE_OBJECTS_TABLE = "pg_catalog.pg_largeobject_metadata"


def describe_fingerprint(fingerprint: Fingerprint) -> str:
    """What a fingerprint covers, for people: ``4 tables, 2 large objects`` or ``3 files``."""
    tables = dict(fingerprint.get("tables") or {})
    large_objects = tables.pop(LARGE_OBJECTS_TABLE, None)
    files = fingerprint.get("files") or {}
    parts = []
    if tables or not files:
        parts.append(f"{len(tables)} table{'s' if len(tables) != 1 else ''}")
    if large_objects:
        parts.append(f"{large_objects} large object{'s' if large_objects != 1 else ''}")
    if files:
        parts.append(f"{len(files)} file{'s' if len(files) != 1 else ''}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Target:
    """Where a restore goes: a database URL (password apart) or a filesystem path."""

    location: str
    password: Secret | None = None
    #: a throwaway place (a drill's ephemeral cluster): missing roles may be created there
    throwaway: bool = False

    def __str__(self) -> str:
        return self.location


@dataclass
class Capture:
    """What ``Source.snapshot()`` yields: the dump stream, read once, and what it proves.

    ``chunks`` yields the plaintext dump and raises SourceError when the dump ends early
    (tool killed or failed, completion marker missing). ``fingerprint`` is complete only once
    ``chunks`` is exhausted without error.
    """

    chunks: Iterator[bytes]
    fingerprint: Fingerprint
    #: file name extension of the raw artifact (pgdump, sql, sqlite, tar)
    extension: str
    tool_versions: dict[str, str] = field(default_factory=dict)
    format: str = ""
    #: what the capture left out without failing (a file that vanished while being read),
    #: complete once ``chunks`` is exhausted
    warnings: list[str] = field(default_factory=list)
    #: what only the sealed manifest may hold, never the catalog, a report or a log
    #: (PostgreSQL: the roles' login and password hashes when the plan opts in)
    private: dict[str, Any] = field(default_factory=dict)


#: source types whose restore loads a file (pg_restore -j seeks in it): a restore writes the
#: plaintext while it authenticates the artifact, and hands that file over
RESTORES_FROM_A_FILE = frozenset({"postgresql"})


class Source(Protocol):
    name: str
    type: str

    def snapshot(self) -> AbstractContextManager[Capture]:
        """Capture the source once, consistently. The context closes and reaps every child
        process and temporary file, on success and on failure."""
        ...

    def default_target(self) -> Target:
        """Where the data came from (the default restore target)."""
        ...

    def is_target_empty(self, target: Target) -> bool:
        """False when restoring would replace something (tables, rows, files)."""
        ...

    def describe_target(self, target: Target) -> str:
        """What is at the target now, for --force messages (``3 tables, 1204 rows``)."""
        ...

    def restore(self, stream: IO[bytes], target: Target, *, replace: bool = False) -> None:
        """Load the plaintext dump from ``stream`` into ``target``, creating a missing database.
        ``replace`` drops what is there first. Raises SourceError on failure."""
        ...

    def fingerprint_target(self, target: Target, like: Fingerprint) -> Fingerprint:
        """Fingerprint restored data the same way as at capture time, for drill checks."""
        ...

    def query(self, target: Target, sql: str) -> object:
        """Run a read-only query returning one value (sql drill checks). Databases only."""
        ...


def compare_fingerprints(expected: Fingerprint, actual: Fingerprint) -> list[str]:
    """Differences between two fingerprints, each naming the table or file; empty when equal."""
    problems: list[str] = []
    for section in ("tables", "files"):
        want, have = expected.get(section), actual.get(section)
        if want is None:
            continue
        have = have or {}
        for name in sorted(set(want) | set(have)):
            if name not in have:
                problems.append(f"{section[:-1]} {name} is missing")
            elif name not in want:
                problems.append(f"{section[:-1]} {name} was not in the backup")
            elif want[name] != have[name]:
                problems.append(f"{section[:-1]} {name}: expected {want[name]}, found {have[name]}")
    if expected.get("schema_sha256") and expected.get("schema_sha256") != actual.get(
        "schema_sha256"
    ):
        problems.append("schema differs from the one captured at backup time")
    want, have = expected.get("digests") or {}, actual.get("digests") or {}
    for name in sorted(set(want) & set(have)):
        if want[name] != have[name] and (expected.get("tables") or {}).get(name) == (
            actual.get("tables") or {}
        ).get(name):
            problems.append(f"table {name}: content differs from the backup (same row count)")
    for section in ("privileges", "database"):
        if expected.get(section) is None:
            continue  # a snapshot taken before drkit captured it
        want, have = dict(expected[section]), dict(actual.get(section) or {})
        for name in sorted(set(want) | set(have)):
            if want.get(name) != have.get(name):
                what = (
                    f"{name} owner and privileges"
                    if section == "privileges"
                    else f"database {name}"
                )
                problems.append(
                    f"{what}: {want.get(name, 'absent')!r} at backup, "
                    f"{have.get(name, 'absent')!r} restored"
                )
    problems += _attribute_differences(expected, actual)
    return problems


#: Sections of MariaDB/MySQL fingerprints compared entry by entry: section -> how an entry is
#: named in a difference.
ATTRIBUTE_SECTIONS = {"definers": "definer of {name}", "events": "status of event {name}"}


def _attribute_differences(expected: Fingerprint, actual: Fingerprint) -> list[str]:
    """Definers and event status (MariaDB), a file's mode and owner (SQLite): each recorded
    entry that differs. A file attribute the restore could not set is not in ``actual``."""
    problems = []
    for section, what in ATTRIBUTE_SECTIONS.items():
        if expected.get(section) is None:
            continue  # a snapshot taken before drkit captured it
        want, have = dict(expected[section]), dict(actual.get(section) or {})
        for name in sorted(set(want) | set(have)):
            if want.get(name) != have.get(name):
                problems.append(
                    f"{what.format(name=name)}: {want.get(name, 'absent')!r} at backup, "
                    f"{have.get(name, 'absent')!r} restored"
                )
    want_file, have_file = expected.get("file") or {}, actual.get("file") or {}
    for attribute in sorted(set(want_file) & set(have_file)):
        if want_file[attribute] != have_file[attribute]:
            problems.append(
                f"file {attribute}: expected {want_file[attribute]}, found {have_file[attribute]}"
            )
    return problems


@dataclass
class Restored:
    """What a faithful restore did not bring back, deliberately: ``left_out`` for people (the
    restore's output, --json, the report), ``unverified`` the fingerprint sections that can
    therefore not match."""

    left_out: list[str] = field(default_factory=list)
    unverified: set[str] = field(default_factory=set)


@runtime_checkable
class FaithfulRestore(Protocol):
    """A source that restores owners, privileges and settings it captured: ``captured`` is
    the snapshot's fingerprint, ``roles`` what to do about roles the target lacks
    (``require``: refuse before loading, ``create``: create them without login, ``skip``:
    leave out what names them); ``private`` what the sealed manifest alone holds (``Capture``),
    never given to a drill's sandbox."""

    def restore_faithfully(
        self,
        stream: IO[bytes],
        target: Target,
        *,
        captured: Fingerprint,
        roles: str,
        replace: bool = False,
        private: dict[str, Any] | None = None,
    ) -> Restored: ...


# --- restores that cannot destroy (drkit.actions.restore_swap) -------------------------------

#: Marks in the names of the copies a restore makes beside its target: the copy being loaded
#: (``<target>_drkit_restoring_<id>``) and the target it replaced (``<target>_drkit_previous_<time>``).
RESTORING_MARK = "_drkit_restoring_"
PREVIOUS_MARK = "_drkit_previous_"


class Replacement(Protocol):
    """How a source's target is replaced without ever being destroyed first: the new data is
    loaded into a staging copy beside the target, verified, then swapped in by renaming, the
    old target kept as the previous copy. Each source type has one (``drkit.sources.swap``)."""

    def refusal(self, target: Target) -> str | None:
        """Why ``target`` can never be restored to (a system database), or None."""
        ...

    def exists(self, target: Target) -> bool:
        """True when something (a database, a file, one of the source's paths) is there."""
        ...

    def beside(self, target: Target, mark: str) -> Target:
        """A place next to ``target`` (same server, same file system) named with ``mark``
        (``RESTORING_MARK`` or ``PREVIOUS_MARK`` plus an id); nothing is made there."""
        ...

    def swap(self, staged: Target, target: Target, previous: Target) -> bool:
        """Move ``target`` to ``previous`` (when it exists) and ``staged`` to ``target``, as
        atomically as the engine allows; on failure ``target`` is left as it was. True when
        there was a target to keep as ``previous``."""
        ...

    def remove(self, copy: Target) -> None:
        """Remove a staging or previous copy (never anything without a drkit mark in its
        name); one already gone is fine."""
        ...

    def removal_command(self, copy: Target) -> str:
        """The one shell command that removes a previous copy, for people."""
        ...
