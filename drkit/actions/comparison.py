"""`drkit diff`: what changed between two snapshots of a plan, source by source, from the
fingerprints their capture recorded (tables and row counts, per-table content digests where
recorded, files and their hashes). Nothing is fetched or decrypted but the manifests.

The first thing to look at when choosing a snapshot from before a bad deploy or a
ransomware event: the newest snapshot whose tables and files had not changed yet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from drkit.actions.changes import (
    Change,
    compare_fingerprints,
    has_content_digests,
    is_content_section,
)
from drkit.actions.inspection import ArtifactContents, SnapshotContents, read_contents
from drkit.actions.resources import Resources
from drkit.actions.selection import locate_snapshot
from drkit.sources.base import LARGE_OBJECTS_TABLE

SourceStatus = Literal["added", "removed", "changed", "unchanged"]


@dataclass
class SourceDiff:
    """One source's differences between the two snapshots."""

    source: str
    type: str
    status: SourceStatus
    changes: list[Change] = field(default_factory=list)
    #: fingerprint section -> entries equal in both snapshots
    unchanged: dict[str, int] = field(default_factory=dict)
    #: sections one snapshot recorded and the other did not: not compared
    not_compared: dict[str, str] = field(default_factory=dict)
    #: whether each snapshot recorded per-table content digests (None: no tables)
    content_digests: tuple[bool | None, bool | None] = (None, None)

    def to_json(self) -> dict[str, Any]:
        before, after = self.content_digests
        return {
            "source": self.source,
            "type": self.type,
            "status": self.status,
            "changes": [change.to_json() for change in self.changes],
            "unchanged": self.unchanged,
            "not_compared": self.not_compared,
            "content_digests": {"before": before, "after": after},
        }


@dataclass
class SnapshotDiff:
    """The differences from snapshot ``before`` to snapshot ``after``."""

    before: SnapshotContents
    after: SnapshotContents
    sources: list[SourceDiff]
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(source.status != "unchanged" for source in self.sources)

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.after.plan,
            "before": side_json(self.before),
            "after": side_json(self.after),
            "changed": self.changed,
            "sources": [source.to_json() for source in self.sources],
            "notes": self.notes,
        }


def side_json(contents: SnapshotContents) -> dict[str, Any]:
    return {
        "snapshot_id": contents.snapshot_id,
        "taken_at": contents.taken_at.isoformat(),
        "origin": contents.origin,
        "drkit_version": contents.drkit_version,
    }


def diff_sources(before: ArtifactContents | None, after: ArtifactContents | None) -> SourceDiff:
    """One source compared: added, removed, or its fingerprints compared section by section."""
    if before is None or after is None:
        present = after or before
        assert present is not None
        return SourceDiff(present.source, present.type, "added" if before is None else "removed")
    found = compare_fingerprints(before.fingerprint, after.fingerprint)
    count_large_objects_apart(found.unchanged, found.changes, after.fingerprint)
    digests = (has_content_digests(before.fingerprint), has_content_digests(after.fingerprint))
    return SourceDiff(
        after.source,
        after.type,
        "changed" if found.changes else "unchanged",
        found.changes,
        found.unchanged,
        found.one_sided,
        digests,
    )


def count_large_objects_apart(
    unchanged: dict[str, int], changes: list[Change], fingerprint: dict[str, Any]
) -> None:
    """PostgreSQL counts large objects under ``tables``: not a table, so counted apart."""
    tables = fingerprint.get("tables")
    changed = any(c.section == "tables" and c.name == LARGE_OBJECTS_TABLE for c in changes)
    if not isinstance(tables, dict) or LARGE_OBJECTS_TABLE not in tables or changed:
        return
    if unchanged.get("tables"):
        unchanged["tables"] -= 1
        unchanged["large_objects"] = 1
        if not unchanged["tables"]:
            del unchanged["tables"]


def describe_snapshot(contents: SnapshotContents) -> str:
    if contents.drkit_version:
        return f"snapshot {contents.snapshot_id} (written by drkit {contents.drkit_version})"
    return f"snapshot {contents.snapshot_id}"


def digest_notes(diff: SnapshotDiff) -> list[str]:
    """Said plainly: which comparisons could only count rows, and why."""
    notes = []
    for source in diff.sources:
        lacking = [
            describe_snapshot(contents)
            for contents, recorded in zip(
                (diff.before, diff.after), source.content_digests, strict=True
            )
            if recorded is False
        ]
        if lacking:
            notes.append(
                f"{source.source}: {' and '.join(lacking)} recorded no per-table content "
                "digests (an older drkit, or a source type it does not digest): tables are "
                "compared by row count and schema only, so a change that kept a table's row "
                "count does not show"
            )
        uncompared = [s for s in source.not_compared if not is_content_section(s)]
        if uncompared:
            notes.append(
                f"{source.source}: recorded by one snapshot only, not compared: "
                + ", ".join(sorted(uncompared))
            )
    return notes


def diff_contents(before: SnapshotContents, after: SnapshotContents) -> SnapshotDiff:
    """Every source of either snapshot, in the newer snapshot's order, then removed ones."""
    names = list(after.sources) + [s for s in before.sources if s not in after.sources]
    sources = [diff_sources(before.artifact(name), after.artifact(name)) for name in names]
    diff = SnapshotDiff(before, after, sources)
    diff.notes = digest_notes(diff)
    if before.taken_at > after.taken_at:
        diff.notes.insert(
            0, f"{before.snapshot_id} is newer than {after.snapshot_id}: changes read backwards"
        )
    return diff


def diff_snapshots(
    resources: Resources, first: str, second: str, *, store_name: str | None = None
) -> SnapshotDiff:
    """What changed from the snapshot named ``first`` to the one named ``second`` (ids,
    prefixes, ``latest``, ``latest~N``), from the catalog or one store's manifests."""
    contents = []
    for name in (first, second):
        entry = locate_snapshot(resources, name, store_name=store_name)
        contents.append(read_contents(resources, entry, store_name=store_name))
    return diff_contents(contents[0], contents[1])
