"""Text for people of `drkit info` and `drkit diff`: what a snapshot holds and what changed,
in tables, files and rows rather than fingerprint sections. Long lists are cut; ``--json``
has everything."""

from __future__ import annotations

from typing import Any

from drkit.actions.changes import (
    DIGEST_WORDS,
    Change,
    entry_fields,
    is_content_section,
    is_digest,
)
from drkit.actions.comparison import SnapshotDiff, SourceDiff
from drkit.actions.inspection import ArtifactContents, CopyState, SnapshotContents, SnapshotInfo
from drkit.cli.moments import format_local
from drkit.cli.tables import render_table
from drkit.plan.durations import humanize_seconds
from drkit.sources.base import LARGE_OBJECTS_TABLE, describe_fingerprint
from drkit.units import humanize_bytes

#: entries shown per source before "... and N more"
SHOWN_ENTRIES = 40
#: how a fingerprint section's entries are named, and what a bare value of one is
NOUNS = {
    "tables": ("table", "rows"),
    "files": ("file", "content"),
    "modes": ("file", "mode"),
    "owners": ("file", "owner"),
    "sequences": ("sequence", "value"),
}
#: single values named for people
SCALARS = {"schema_sha256": "schema"}
INDENT = "  "


# --- drkit info --------------------------------------------------------------------------------


def render_info(info: SnapshotInfo) -> list[str]:
    contents = info.contents
    lines = [f"snapshot {contents.snapshot_id} of plan {contents.plan}"]
    lines += [INDENT + line for line in describe_snapshot(contents)]
    lines.append("sources")
    for artifact in contents.artifacts:
        lines += [INDENT + line for line in describe_artifact(artifact)]
    lines.append("stores")
    rows = [copy_row(copy) for copy in info.copies]
    lines += [INDENT + line for line in render_table(("STORE", "COPY", "SIZE", "VERIFIED"), rows)]
    for store, why in info.problems.items():
        lines.append(f"{INDENT}{store}: {why}")
    lines.append("drills" if info.drills else "drills: none of this snapshot")
    drill_rows = [
        [
            format_local(drill.finished_at),
            drill.store,
            drill.outcome if drill.outcome == "ok" else drill.outcome.upper(),
            humanize_seconds(drill.rto_seconds) if drill.rto_seconds is not None else "-",
            drill.error or "",
        ]
        for drill in info.drills
    ]
    if drill_rows:
        header = ("FINISHED", "STORE", "OUTCOME", "RTO", "")
        lines += [INDENT + line for line in render_table(header, drill_rows)]
    return lines


def describe_snapshot(contents: SnapshotContents) -> list[str]:
    took = ""
    if contents.finished_at is not None:
        took = (
            f", took {humanize_seconds((contents.finished_at - contents.taken_at).total_seconds())}"
        )
    keys = dict.fromkeys(key for artifact in contents.artifacts for key in artifact.keys)
    return [
        f"taken     {format_local(contents.taken_at)}{took}",
        f"size      {humanize_bytes(contents.plaintext_size)} of data",
        f"keys      {', '.join(keys) or '-'} (any one opens every artifact)",
        f"manifest  {describe_manifest(contents)}",
    ]


def describe_manifest(contents: SnapshotContents) -> str:
    if contents.authenticated is None:
        return (
            "as recorded in the catalog, not opened here "
            "(--store NAME opens and authenticates a store's copy)"
        )
    writer = f", written by drkit {contents.drkit_version}" if contents.drkit_version else ""
    if contents.authenticated:
        return f"from {contents.origin}: sealed and authenticated{writer}"
    return f"from {contents.origin}: release 0.1.0 format, NOT authenticated{writer}"


def copy_row(copy: CopyState) -> list[str]:
    if copy.verify_ok is None or copy.verified_at is None:
        verified = "never"
    elif copy.verify_ok:
        verified = f"ok {format_local(copy.verified_at)}"
    else:
        verified = f"FAILED {format_local(copy.verified_at)}: {copy.verify_error or ''}".strip()
    size = humanize_bytes(copy.bytes) if copy.bytes else "-"
    return [copy.store, copy.status, size, verified]


def describe_artifact(artifact: ArtifactContents) -> list[str]:
    stored = artifact.encrypted_size if artifact.encrypted_size is not None else artifact.raw_size
    lines = [
        f"{artifact.source} ({artifact.type}): {artifact.format}, {artifact.compression}, "
        f"{humanize_bytes(artifact.plaintext_size)}"
        + (f" ({humanize_bytes(stored)} stored)" if stored is not None else "")
        + f"; {describe_fingerprint(artifact.fingerprint)}"
    ]
    if artifact.tool_versions:
        tools = ", ".join(f"{name} {version}" for name, version in artifact.tool_versions.items())
        lines.append(f"{INDENT}made with {tools}")
    entries = list(fingerprint_entries(artifact.fingerprint))
    lines += [INDENT + line for line in entries[:SHOWN_ENTRIES]]
    if len(entries) > SHOWN_ENTRIES:
        lines.append(f"{INDENT}... and {len(entries) - SHOWN_ENTRIES} more (--json lists all)")
    return lines


def fingerprint_entries(fingerprint: dict[str, Any]) -> list[str]:
    """One line per table (rows) and file (hash), then the capture's single values."""
    lines = []
    tables = fingerprint.get("tables")
    if isinstance(tables, dict):
        for name, value in sorted(tables.items()):
            if name == LARGE_OBJECTS_TABLE:
                lines.append(f"large objects  {value}")
                continue
            rows = entry_fields("tables", value).get("rows", value)
            lines.append(f"table {name}  {count_rows(rows)}")
    files = fingerprint.get("files")
    if isinstance(files, dict):
        for name, value in sorted(files.items()):
            lines.append(f"file {name}  {short(value)}")
    for section, value in sorted(fingerprint.items()):
        if not isinstance(value, dict | list):
            lines.append(f"{SCALARS.get(section, section)}  {short(value)}")
    return lines


def count_rows(rows: Any) -> str:
    return f"{rows} row" if rows == 1 else f"{rows} rows"


def short(value: Any) -> str:
    """A digest cut to its first 12 characters (enough to tell two apart at a glance)."""
    if is_digest(value):
        return f"{value[:12]}…"
    if isinstance(value, dict):
        return ", ".join(f"{key} {short(inner)}" for key, inner in value.items())
    return str(value)


# --- drkit diff --------------------------------------------------------------------------------


def render_diff(diff: SnapshotDiff) -> list[str]:
    lines = [
        f"from {diff.before.snapshot_id}  {format_local(diff.before.taken_at)}",
        f"  to {diff.after.snapshot_id}  {format_local(diff.after.taken_at)}",
    ]
    for source in diff.sources:
        lines += render_source(source)
    if not diff.changed:
        lines.append("no changes")
    lines += [f"note: {note}" for note in diff.notes]
    return lines


def render_source(source: SourceDiff) -> list[str]:
    title = f"{source.source} ({source.type})"
    if source.status in ("added", "removed"):
        return [f"{title}: source {source.status}"]
    same = unchanged_summary(source.unchanged)
    if source.status == "unchanged":
        return [f"{title}: unchanged" + (f" ({same})" if same else "")]
    described = merge_lines(source.changes)
    lines = [f"{title}: changed"]
    lines += [INDENT + line for line in described[:SHOWN_ENTRIES]]
    if len(described) > SHOWN_ENTRIES:
        left = len(described) - SHOWN_ENTRIES
        lines.append(f"{INDENT}... and {left} more (--json lists every change)")
    if same:
        lines.append(f"{INDENT}unchanged: {same}")
    return lines


def unchanged_summary(unchanged: dict[str, int]) -> str:
    parts = []
    for section, count in unchanged.items():
        if section in ("tables", "files"):
            noun = NOUNS[section][0]
            parts.append(f"{count} {noun}{'s' if count != 1 else ''}")
    if unchanged.get("large_objects"):
        parts.append("large objects")
    return ", ".join(parts)


def merge_lines(changes: list[Change]) -> list[str]:
    """One line per table or file, whatever sections its changes came from: ``~ table
    orders: rows 500 -> 520; content changed``."""
    merged: dict[tuple[str, str, str], list[str]] = {}
    # the entry's own section (row count, file hash) speaks first
    for change in sorted(changes, key=lambda change: change.section not in NOUNS):
        noun, field_word = noun_of(change.section)
        subject = f"{noun} {change.name}" if change.name is not None else noun
        if change.section == "tables" and change.name == LARGE_OBJECTS_TABLE:
            subject, field_word = "large objects", "count"
        details = merged.setdefault((change.kind, subject, change.section), [])
        if change.name is not None:
            details += describe_entry(change, field_word)
        elif change.kind == "changed":
            details.append(describe_values(change.before, change.after))
    lines: dict[tuple[str, str], list[str]] = {}
    for (kind, subject, _), details in merged.items():
        lines.setdefault((kind, subject), []).extend(d for d in details if d)
    mark = {"added": "+", "removed": "-", "changed": "~"}
    ordered = sorted(lines.items(), key=lambda item: (item[0][1], item[0][0]))
    return [
        f"{mark[kind]} {subject}" + (f": {'; '.join(dict.fromkeys(details))}" if details else "")
        for (kind, subject), details in ordered
    ]


def noun_of(section: str) -> tuple[str, str]:
    if section in NOUNS:
        return NOUNS[section]
    if is_content_section(section):
        return "table", "content"
    return SCALARS.get(section, section), "value"


def describe_entry(change: Change, field_word: str) -> list[str]:
    if change.kind != "changed":
        value = change.after if change.kind == "added" else change.before
        if change.section == "tables" and change.name != LARGE_OBJECTS_TABLE:
            return [count_rows(entry_fields("tables", value).get("rows", value))]
        return []
    was = entry_fields(change.section, change.before)
    now = entry_fields(change.section, change.after)
    details = []
    for field in change.fields:
        word = field_word if field in ("value", "sha256", "rows") else field
        if change.name == LARGE_OBJECTS_TABLE and field == "rows":
            word = "count"
        if any(part in field for part in DIGEST_WORDS):
            word = "content"
        details.append(f"{word} {describe_values(was[field], now[field])}")
    return details


def describe_values(before: Any, after: Any) -> str:
    if is_digest(before) or is_digest(after):
        return "changed"
    return f"{before} -> {after}"
