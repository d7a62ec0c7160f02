"""A WAL object deleted from one store: the archiver's reconciliation forgets it, the store's
window reports the gap (the other store's stays whole), and a restore through the damaged
store fails over to the other one for that segment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from drkit.actions.pitr import PitrRequest, restore_to_moment
from drkit.archive.ledger import store_windows
from drkit.archive.objects import WalObject
from drkit.sandboxes import recovered_cluster
from tests.archive.conftest import PitrSetup, archiving
from tests.archive.test_point_in_time import (
    commit,
    insert_across_segments,
    stream_and_back_up,
    wait_for,
    window_reaches,
)

pytestmark = pytest.mark.slow


def test_a_deleted_segment_is_a_gap_in_that_store_and_restore_fails_over(
    pitr_setup: Callable[..., PitrSetup], server_folder: Path
) -> None:
    setup = pitr_setup()
    commit(setup, "CREATE TABLE orders (id int PRIMARY KEY)")
    with archiving(setup):
        stream_and_back_up(setup)
        insert_across_segments(setup, range(1, 4))
        last = commit(setup, "INSERT INTO orders VALUES (4)")
        wait_for(lambda: window_reaches(setup, last), "the window to reach the last commit")
    [east, west] = store_windows(setup.catalog, setup.plan, setup.source)
    assert east.problems == [] and west.problems == []
    segments = sorted(
        r.name
        for r in setup.catalog.list_wal_objects(setup.plan.name, store="east")
        if r.kind == "segment"
    )
    victim = segments[len(segments) // 2]
    key = WalObject("segment", victim).key(setup.plan.name, "orders")
    (setup.folder / "east" / key).unlink()

    setup.archiver_with(reconcile_every=0).ship_round()  # what a running archiver does

    [east, west] = store_windows(setup.catalog, setup.plan, setup.source)
    assert east.problems == [f"gap: segment {victim} is missing"]
    assert west.problems == [] and west.end is not None and west.end >= last
    restored = server_folder / "restored"
    request = PitrRequest(recovered_cluster.RecoveryTarget(None), restored, store_first="east")
    result = restore_to_moment(setup.resources, request)
    try:
        url = f"postgresql://postgres@127.0.0.1:{result.port}/{setup.database}"
        with psycopg.connect(url) as connection:
            rows = [row[0] for row in connection.execute("SELECT id FROM orders ORDER BY id")]
        assert rows == [1, 2, 3, 4]
        assert f"east: segment {victim} is missing" in result.failovers
    finally:
        recovered_cluster.stop(restored)
