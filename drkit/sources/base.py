"""The Source interface: something a plan protects (a database, a config tree) that can be
captured to a stream, fingerprinted, and restored from a stream."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from drkit.secrets import Secret

#: A fingerprint is plain JSON, stored in manifests, e.g.
#: {"tables": {"public.orders": 1200}, "schema_sha256": "...", "server_version": "15.4"}
#: or {"files": {"etc/app.yaml": "sha256..."}}.
Fingerprint = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """Where a restore goes: a database URL (password apart) or a filesystem path."""

    location: str
    password: Secret | None = None

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
    return problems
