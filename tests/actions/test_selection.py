"""Naming snapshots: ids, unique prefixes, latest and latest~N resolve to the right entry;
an ambiguous prefix is a usage error naming the candidates, a missing one is not found."""

from __future__ import annotations

import pytest

from drkit.actions.selection import resolve_snapshot
from drkit.errors import ExitCode, SnapshotNotFound, UsageError
from drkit.repository import SnapshotEntry, snapshot_time

IDS = (
    "20261127T090000.000Z-aaaaaa",
    "20261127T100000.000Z-bbbbbb",
    "20261127T100500.000Z-cccccc",
    "20261128T090000.000Z-dddddd",
)


def entries() -> list[SnapshotEntry]:
    # deliberately not in time order: resolution must not depend on the listing's order
    order = (IDS[2], IDS[0], IDS[3], IDS[1])
    return [SnapshotEntry(i, snapshot_time(i), ["east"]) for i in order]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("latest", IDS[3]),
        ("latest~0", IDS[3]),
        ("latest~1", IDS[2]),
        ("latest~3", IDS[0]),
        (IDS[1], IDS[1]),
        ("20261128", IDS[3]),
        ("20261127T1005", IDS[2]),
        (" 20261127T09 ", IDS[0]),
    ],
)
def test_a_name_resolves_to_the_snapshot_it_means(name: str, expected: str) -> None:
    assert resolve_snapshot(entries(), name).snapshot_id == expected


def test_an_ambiguous_prefix_is_a_usage_error_naming_the_candidates() -> None:
    with pytest.raises(UsageError) as raised:
        resolve_snapshot(entries(), "20261127T10")
    assert raised.value.exit_code == ExitCode.USAGE
    assert IDS[1] in raised.value.message and IDS[2] in raised.value.message
    assert "2 snapshots start with it" in raised.value.message


def test_a_name_matching_nothing_is_not_found() -> None:
    with pytest.raises(SnapshotNotFound) as raised:
        resolve_snapshot(entries(), "20251127")
    assert raised.value.exit_code == ExitCode.NOT_FOUND


def test_latest_beyond_the_oldest_snapshot_is_not_found_and_says_how_many_exist() -> None:
    with pytest.raises(SnapshotNotFound, match="only 4 snapshot"):
        resolve_snapshot(entries(), "latest~4")


def test_latest_of_no_snapshots_is_not_found() -> None:
    with pytest.raises(SnapshotNotFound):
        resolve_snapshot([], "latest")


def test_an_empty_name_is_refused_not_read_as_latest() -> None:
    with pytest.raises(UsageError, match="empty"):
        resolve_snapshot(entries(), "  ")


def test_an_exact_id_wins_over_a_longer_id_it_prefixes() -> None:
    shorter = SnapshotEntry("20261127T090000.000Z-aa", None, ["east"])
    assert resolve_snapshot([*entries(), shorter], "20261127T090000.000Z-aa") is shorter
