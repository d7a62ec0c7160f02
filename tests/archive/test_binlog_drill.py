"""The MariaDB point-in-time drill: a random moment of a store's window restored into a
scratch database, the heartbeat proving where the replay stopped; and the same drill failing
when the binlog file it starts from is damaged in every store."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from drkit.actions.backup import backup
from drkit.actions.binlog_pitr_drill import binlog_pitr_drill
from drkit.actions.drill import drill
from drkit.archive.objects import WalObject
from drkit.outcome import Outcome
from tests.archive.conftest import BinlogServer, BinlogSetup, running
from tests.archive.test_binlog_archive import window_reaches
from tests.archive.test_point_in_time import wait_for

pytestmark = pytest.mark.slow


#: the plan's own check, run on the recovered copy (read-only, as the scratch reader)
COUNT_CHECK = {
    "type": "sql",
    "source": "ledger",
    "query": "SELECT count(*) FROM orders",
    "expect": "between 0 and 5",
}


def sandboxed(server: BinlogServer) -> dict[str, Any]:
    return {
        "drill": {
            "sandbox": {"mysql": f"mysql://root@127.0.0.1:{server.port}/"},
            "checks": [COUNT_CHECK],
        }
    }


def archived_with_heartbeat(setup: BinlogSetup) -> None:
    setup.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    with running(setup.archiver()):
        wait_for(lambda: any(setup.spool.glob("mariadb-bin.*")), "mariadb-binlog to stream")
        assert backup(setup.resources).outcome.value == "ok"
        for number in range(1, 6):
            setup.execute(f"INSERT INTO orders VALUES ({number})")
            time.sleep(1)
        last = datetime.now(UTC)
        wait_for(lambda: window_reaches(setup, last), "the window to reach the last commit")


def test_a_drill_to_a_random_moment_lands_there_by_the_heartbeat(
    binlog_setup: Callable[..., BinlogSetup], binlog_server: BinlogServer
) -> None:
    setup = binlog_setup(plan_extra=sandboxed(binlog_server), heartbeat_every="1s")
    before = {row[0] for row in binlog_server.execute("SHOW DATABASES")}
    archived_with_heartbeat(setup)
    [result] = drill(setup.resources)
    assert result.outcome is Outcome.OK, (result.error, result.checks)
    checks = {check.name: check for check in result.checks}
    assert checks["no heartbeat after the target"].measured == 0
    assert checks["newest heartbeat"].passed
    assert checks["sql ledger: SELECT count(*) FROM orders"].passed
    assert {"fetch", "fetch binlog", "replay", "checks"} <= set(result.phases)
    recorded = setup.catalog.last_drill(setup.plan.name)
    assert recorded is not None and recorded.outcome == "ok"
    assert {row[0] for row in binlog_server.execute("SHOW DATABASES")} == before  # dropped


def test_the_drill_fails_when_the_binlog_it_starts_from_is_damaged_in_every_store(
    binlog_setup: Callable[..., BinlogSetup], binlog_server: BinlogServer
) -> None:
    setup = binlog_setup(plan_extra=sandboxed(binlog_server), heartbeat_every="1s")
    archived_with_heartbeat(setup)
    [snapshot] = setup.catalog.list_snapshots(setup.plan.name)
    first = snapshot.artifacts[0].fingerprint["binlog"]["file"]
    damaged = []
    for store in ("east", "west"):
        for kind in ("segment", "partial"):
            path = setup.folder / store / WalObject(kind, first).key(setup.plan.name, "ledger")
            if path.exists():
                data = bytearray(path.read_bytes())
                data[len(data) // 2] ^= 1
                path.write_bytes(bytes(data))
                damaged.append(path)
    assert len(damaged) >= 2
    result = binlog_pitr_drill(setup.resources, setup.source, chance=random.Random(7))
    assert result.outcome is Outcome.FAILED
    assert result.error is not None and first in result.error
