"""The PITR drill: a random moment of the window, the heartbeat proving where recovery
landed; and the same drill failing when a WAL segment it needs is damaged in every store."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from drkit.actions.drill import drill
from drkit.actions.pitr_drill import pitr_drill
from drkit.archive.objects import WalObject
from drkit.archive.walnames import Segment, parse_lsn, segment_of
from drkit.outcome import Outcome
from tests.archive.conftest import PitrSetup, archiving
from tests.archive.test_point_in_time import commit, stream_and_back_up, wait_for, window_reaches

pytestmark = pytest.mark.slow


def archived_with_heartbeat(setup: PitrSetup) -> None:
    commit(setup, "CREATE TABLE orders (id int PRIMARY KEY)")
    with archiving(setup):
        stream_and_back_up(setup)
        for number in range(1, 5):
            commit(setup, f"INSERT INTO orders VALUES ({number})")
            time.sleep(1)
        last = commit(setup, "SELECT 1")
        wait_for(lambda: window_reaches(setup, last), "the window to reach the last commit")


def test_a_drill_to_a_random_moment_lands_there_by_the_heartbeat(
    pitr_setup: Callable[..., PitrSetup],
) -> None:
    count = {
        "type": "sql",
        "source": "orders",
        "query": "SELECT count(*) FROM orders",
        "expect": "between 0 and 4",
    }
    setup = pitr_setup(plan_extra={"drill": {"checks": [count]}}, heartbeat_every="1s")
    archived_with_heartbeat(setup)
    [result] = drill(setup.resources)
    assert result.outcome is Outcome.OK, (result.error, result.checks)
    checks = {check.name: check for check in result.checks}
    assert checks["no heartbeat after the target"].measured == 0
    assert checks["newest heartbeat"].passed
    assert checks["sql orders: SELECT count(*) FROM orders"].passed  # on the recovered copy
    assert {"fetch", "replay", "checks"} <= set(result.phases)
    recorded = setup.catalog.last_drill(setup.plan.name)
    assert recorded is not None and recorded.outcome == "ok"


def test_the_drill_fails_when_a_segment_it_needs_is_damaged_in_every_store(
    pitr_setup: Callable[..., PitrSetup],
) -> None:
    setup = pitr_setup(heartbeat_every="1s")
    archived_with_heartbeat(setup)
    [snapshot] = setup.catalog.list_snapshots(setup.plan.name)
    start = parse_lsn(snapshot.artifacts[0].fingerprint["base_backup"]["start_lsn"])
    needed = WalObject("segment", Segment(1, segment_of(start)).name())
    for store in ("east", "west"):
        path = setup.folder / store / needed.key(setup.plan.name, "orders")
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    result = pitr_drill(setup.resources, setup.source, chance=random.Random(7))
    assert result.outcome is Outcome.FAILED
    assert result.error is not None and needed.name in result.error
