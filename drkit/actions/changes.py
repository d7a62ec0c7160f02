"""What changed between two captures of one source, read from their fingerprints as data.

A fingerprint is plain JSON (``drkit.sources.base``): sections keyed by table or file
(``tables``: row counts, ``files``: sha256, and whatever later releases add, such as per-table
content digests), lists (grants) and single values (``schema_sha256``). Every section both
captures recorded is compared entry by entry, without a fixed list of section names, so a
section added by a later release is compared as soon as both snapshots have it, and a section
only one of them recorded is named as not compared rather than reported as a change."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ChangeKind = Literal["added", "removed", "changed"]
#: how a bare value of a keyed section is named when the other capture recorded a mapping of
#: fields for the same entry (a row count beside {"rows": ..., "content_sha256": ...})
SCALAR_FIELDS = {"tables": "rows", "files": "sha256"}
#: a value that is a hash of content, not something a person reads
DIGEST_VALUE = re.compile(r"[0-9a-f]{32,}")
#: words in a section or field name that mark a digest of a table's content
DIGEST_WORDS = ("digest", "content")


@dataclass(frozen=True)
class Change:
    """One difference: an entry (``name``) of a section added, removed or changed, or a
    single-valued section (``name`` None) changed. ``fields`` names what changed within an
    entry recorded as a mapping of fields."""

    section: str
    name: str | None
    kind: ChangeKind
    before: Any = None
    after: Any = None
    fields: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "name": self.name,
            "change": self.kind,
            "before": self.before,
            "after": self.after,
            "fields": list(self.fields),
        }


@dataclass
class FingerprintChanges:
    """The differences between two fingerprints of one source."""

    changes: list[Change] = field(default_factory=list)
    #: section -> how many of its entries are the same in both
    unchanged: dict[str, int] = field(default_factory=dict)
    #: section -> "before" or "after": recorded by one capture only, so not compared
    one_sided: dict[str, str] = field(default_factory=dict)


def compare_fingerprints(before: Mapping[str, Any], after: Mapping[str, Any]) -> FingerprintChanges:
    """Every difference between two fingerprints of the same source, section by section."""
    result = FingerprintChanges()
    for section in sorted(set(before) | set(after)):
        if section not in before or section not in after:
            result.one_sided[section] = "after" if section in after else "before"
            continue
        old, new = before[section], after[section]
        if isinstance(old, dict) and isinstance(new, dict):
            changes, same = compare_entries(section, old, new)
            result.changes += changes
            if same:
                result.unchanged[section] = same
        elif isinstance(old, list) and isinstance(new, list):
            result.changes += compare_lists(section, old, new)
        elif old != new:
            result.changes.append(Change(section, None, "changed", old, new))
    return result


def entry_fields(section: str, value: Any) -> dict[str, Any]:
    """An entry as a mapping of fields: a bare value is one field."""
    if isinstance(value, dict):
        return value
    return {SCALAR_FIELDS.get(section, "value"): value}


def compare_entries(
    section: str, old: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[list[Change], int]:
    """Entries added, removed or changed (in a field both recorded), and how many are equal."""
    changes: list[Change] = []
    same = 0
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(Change(section, name, "removed", before=old[name]))
        elif name not in old:
            changes.append(Change(section, name, "added", after=new[name]))
        else:
            was, now = entry_fields(section, old[name]), entry_fields(section, new[name])
            differing = tuple(sorted(f for f in set(was) & set(now) if was[f] != now[f]))
            if differing:
                changes.append(Change(section, name, "changed", old[name], new[name], differing))
            else:
                same += 1
    return changes, same


def compare_lists(section: str, old: list[Any], new: list[Any]) -> list[Change]:
    """Items of a list section (grants, notes) that one capture has and the other lacks."""

    def spelled(item: Any) -> str:
        return item if isinstance(item, str) else json.dumps(item, sort_keys=True)

    was, now = {spelled(item) for item in old}, {spelled(item) for item in new}
    return [Change(section, item, "removed") for item in sorted(was - now)] + [
        Change(section, item, "added") for item in sorted(now - was)
    ]


def is_digest(value: Any) -> bool:
    return isinstance(value, str) and DIGEST_VALUE.fullmatch(value) is not None


def has_content_digests(fingerprint: Mapping[str, Any]) -> bool | None:
    """Whether the capture recorded a digest of some table's content, beyond its row count;
    None when it has no tables (a files source: each file's sha256 is its content)."""
    tables = fingerprint.get("tables")
    if not isinstance(tables, dict) or not tables:
        return None
    for value in tables.values():
        if isinstance(value, dict) and any(
            is_digest(inner) and any(word in name for word in DIGEST_WORDS)
            for name, inner in value.items()
        ):
            return True
    for section, value in fingerprint.items():
        if section == "tables" or not isinstance(value, dict):
            continue
        if any(word in section for word in DIGEST_WORDS) and any(
            name in tables and is_digest(inner) for name, inner in value.items()
        ):
            return True
    return False


def is_content_section(section: str) -> bool:
    """A section that holds content digests (named so by its writer)."""
    return any(word in section for word in DIGEST_WORDS) and section != "tables"
