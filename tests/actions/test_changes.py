"""Fingerprints compared as data: every section both captures recorded is compared entry by
entry, whatever its name; a section only one recorded is named, not reported as changes; a
row count and a {"rows": ..., "content_sha256": ...} entry of a later release compare by rows.
Then the diff of two snapshots' contents, with its plain note on missing content digests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from drkit.actions.changes import Change, compare_fingerprints, has_content_digests
from drkit.actions.comparison import diff_contents
from drkit.actions.inspection import ArtifactContents, SnapshotContents
from drkit.cli.snapshot_views import render_diff

A = "a" * 64
B = "b" * 64
C = "c" * 32
D = "d" * 32


def test_row_counts_tables_added_and_removed_are_named() -> None:
    before = {"tables": {"orders": 500, "legacy": 3, "users": 12}}
    after = {"tables": {"orders": 520, "audit": 10, "users": 12}}
    found = compare_fingerprints(before, after)
    assert found.changes == [
        Change("tables", "audit", "added", after=10),
        Change("tables", "legacy", "removed", before=3),
        Change("tables", "orders", "changed", 500, 520, ("rows",)),
    ]
    assert found.unchanged == {"tables": 1}


def test_files_added_removed_and_rehashed_are_named() -> None:
    before = {"files": {"etc/a.yaml": A, "etc/gone.yaml": A}}
    after = {"files": {"etc/a.yaml": B, "etc/new.yaml": A}}
    kinds = {(c.name, c.kind) for c in compare_fingerprints(before, after).changes}
    assert kinds == {
        ("etc/a.yaml", "changed"),
        ("etc/gone.yaml", "removed"),
        ("etc/new.yaml", "added"),
    }


def test_a_section_of_any_name_is_compared_when_both_recorded_it() -> None:
    before = {
        "tables": {"t": 1},
        "digests": {"t": C},
        "grants": ["GRANT x"],
        "server_version": "15.4",
    }
    after = {
        "tables": {"t": 1},
        "digests": {"t": D},
        "grants": ["GRANT y"],
        "server_version": "16.1",
    }
    changes = compare_fingerprints(before, after).changes
    assert Change("digests", "t", "changed", C, D, ("value",)) in changes
    assert Change("grants", "GRANT x", "removed") in changes
    assert Change("grants", "GRANT y", "added") in changes
    assert Change("server_version", None, "changed", "15.4", "16.1") in changes


def test_a_section_only_one_capture_recorded_is_not_compared() -> None:
    found = compare_fingerprints({"tables": {"t": 1}}, {"tables": {"t": 1}, "digests": {"t": C}})
    assert found.changes == []
    assert found.one_sided == {"digests": "after"}


def test_a_bare_row_count_compares_with_a_later_releases_field_mapping_by_rows() -> None:
    before = {"tables": {"orders": 500, "users": 12}}
    after = {
        "tables": {
            "orders": {"rows": 500, "content_sha256": A},
            "users": {"rows": 13, "content_sha256": B},
        }
    }
    found = compare_fingerprints(before, after)
    assert [(c.name, c.fields) for c in found.changes] == [("users", ("rows",))]
    assert found.unchanged == {"tables": 1}


def test_content_changed_under_an_equal_row_count_is_found_when_both_have_digests() -> None:
    before = {"tables": {"orders": {"rows": 500, "content_sha256": A}}}
    after = {"tables": {"orders": {"rows": 500, "content_sha256": B}}}
    [change] = compare_fingerprints(before, after).changes
    assert change.fields == ("content_sha256",)


def test_content_digests_are_recognised_in_either_shape() -> None:
    assert has_content_digests({"tables": {"t": 1}}) is False
    assert has_content_digests({"tables": {"t": 1}, "digests": {"t": C}}) is True
    assert has_content_digests({"tables": {"t": {"rows": 1, "content_sha256": A}}}) is True
    assert has_content_digests({"tables": {"t": 1}, "schema_sha256": A}) is False
    assert has_content_digests({"files": {"f": A}}) is None


def contents(
    snapshot_id: str, hours: int, fingerprint: dict[str, Any], version: str | None
) -> SnapshotContents:
    artifact = ArtifactContents(
        "db", "postgresql", "pg_dump-custom", "zstd", 10, A, 12, None, ("k",), fingerprint
    )
    taken = datetime(2026, 11, 27, tzinfo=UTC) + timedelta(hours=hours)
    return SnapshotContents(
        "plan", snapshot_id, taken, taken, ("db",), (artifact,), "store east", True, version
    )


def test_a_snapshot_without_content_digests_is_said_plainly_with_the_drkit_that_wrote_it() -> None:
    old = contents("s-old", 0, {"tables": {"orders": 500}}, "0.2.0")
    new = contents("s-new", 1, {"tables": {"orders": 500}, "digests": {"orders": C}}, "0.3.0")
    diff = diff_contents(old, new)
    assert not diff.changed
    [note] = diff.notes
    assert note.startswith(
        "db: snapshot s-old (written by drkit 0.2.0) recorded no per-table content digests"
    )
    assert "row count" in note and "s-new" not in note
    text = "\n".join(render_diff(diff))
    assert "db (postgresql): unchanged (1 table)" in text and "note: db: snapshot s-old" in text


def test_the_text_names_tables_files_and_content_in_one_line_each() -> None:
    old = contents(
        "s1", 0, {"tables": {"orders": 500, "gone": 1}, "digests": {"orders": C, "gone": C}}, None
    )
    new = contents(
        "s2", 1, {"tables": {"orders": 520, "new": 2}, "digests": {"orders": D, "new": D}}, None
    )
    lines = render_diff(diff_contents(old, new))
    assert "  ~ table orders: rows 500 -> 520; content changed" in lines
    assert "  + table new: 2 rows" in lines
    assert "  - table gone: 1 row" in lines
    assert not any("digests" in line for line in lines)


def test_snapshots_given_newest_first_are_compared_and_said_to_read_backwards() -> None:
    newer = contents("s2", 1, {"tables": {"t": 2}}, None)
    older = contents("s1", 0, {"tables": {"t": 1}}, None)
    diff = diff_contents(newer, older)
    assert diff.changed and "changes read backwards" in diff.notes[0]


def test_large_objects_are_counted_apart_from_tables() -> None:
    large = "pg_catalog.pg_largeobject_metadata"
    same = contents("s1", 0, {"tables": {"public.t": 1, large: 2}}, None)
    more = contents("s2", 1, {"tables": {"public.t": 1, large: 3}}, None)
    assert "db (postgresql): unchanged (1 table, large objects)" in render_diff(
        diff_contents(same, same)
    )
    lines = render_diff(diff_contents(same, more))
    assert "  ~ large objects: count 2 -> 3" in lines and "  unchanged: 1 table" in lines
