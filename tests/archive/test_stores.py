"""WAL archiving against other stores: an S3 bucket on moto's server next to a folder, and a
store that is down for a while (every put refused), which catches up from the spool
afterwards without a gap."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from drkit.actions.pitr import PitrRequest, restore_to_moment
from drkit.archive.ledger import store_windows
from drkit.sandboxes import recovered_cluster
from drkit.stores.faults import FaultyStore
from tests.archive.conftest import PitrSetup, archiving
from tests.archive.test_point_in_time import (
    commit,
    insert_across_segments,
    stream_and_back_up,
    wait_for,
    window_reaches,
)

pytestmark = pytest.mark.slow


def restored_ids(port: int, database: str) -> list[int]:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/{database}") as connection:
        return [row[0] for row in connection.execute("SELECT id FROM orders ORDER BY id")]


@pytest.mark.s3
def test_wal_in_an_s3_bucket_restores_to_a_moment(
    pitr_setup: Callable[..., PitrSetup],
    server_folder: Path,
    s3_server: str,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    bucket = {
        "name": "bucket",
        "type": "s3",
        "bucket": s3_bucket,
        "region": "us-east-1",
        "endpoint_url": s3_server,
    }
    folder = {"name": "folder", "type": "filesystem", "path": str(tmp_path / "f"), "region": "b"}
    setup = pitr_setup([bucket, folder])
    commit(setup, "CREATE TABLE orders (id int PRIMARY KEY)")
    with archiving(setup):
        stream_and_back_up(setup)
        commit(setup, "INSERT INTO orders VALUES (1)")
        commit(setup, "SELECT pg_switch_wal()")
        target = commit(setup, "INSERT INTO orders VALUES (2)")
        last = commit(setup, "INSERT INTO orders VALUES (3)")
        wait_for(lambda: window_reaches(setup, last), "the window to reach the last commit")
    assert [w.problems for w in store_windows(setup.catalog, setup.plan, setup.source)] == [[], []]
    restored = server_folder / "restored"
    request = PitrRequest(recovered_cluster.RecoveryTarget(target), restored, store_first="bucket")
    result = restore_to_moment(setup.resources, request)
    try:
        assert restored_ids(result.port, setup.database) == [1, 2]
        assert result.store == "bucket" and result.wal_stores == ["bucket"]
    finally:
        recovered_cluster.stop(restored)


def test_a_store_down_for_a_while_catches_up_without_a_gap(
    pitr_setup: Callable[..., PitrSetup],
) -> None:
    setup = pitr_setup()
    east, west = setup.resources.stores
    down = FaultyStore(east)
    setup.resources.stores = [down, west]
    commit(setup, "CREATE TABLE orders (id int PRIMARY KEY)")
    with archiving(setup):
        stream_and_back_up(setup)
        down.fail_next["put"] = 10  # east refuses every write for several rounds
        insert_across_segments(setup, range(1, 6))
        wait_for(lambda: down.fail_next["put"] == 0, "the store to come back", 180)
        last = commit(setup, "INSERT INTO orders VALUES (6)")
        wait_for(lambda: window_reaches(setup, last), "both windows to reach the last commit", 180)
    windows = store_windows(setup.catalog, setup.plan, setup.source)
    assert [w.problems for w in windows] == [[], []]
    assert {w.last_segment for w in windows} == {windows[0].last_segment}
