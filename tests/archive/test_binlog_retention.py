"""Prune keeps exactly the binlog the kept dumps need: with keep_last 1, the binlog files
before the newest dump's file go from every store, the window then starts at that dump and
stays whole."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from drkit.actions.backup import backup
from drkit.actions.prune import prune
from drkit.archive.ledger import binlog_store_windows
from drkit.archive.objects import objects_from_keys, wal_prefix
from drkit.sources.binlog_stream import parse_binlog_name
from tests.archive.conftest import BinlogSetup, running
from tests.archive.test_binlog_archive import window_reaches
from tests.archive.test_point_in_time import wait_for

pytestmark = pytest.mark.slow


def binlog_numbers(setup: BinlogSetup, store: str) -> list[int]:
    keys = setup.resources.repository.store(store).list(wal_prefix(setup.plan.name, "ledger"))
    found = objects_from_keys(setup.plan.name, "ledger", keys)
    return sorted(
        parsed.number
        for item in found
        if item.kind == "segment" and (parsed := parse_binlog_name(item.name)) is not None
    )


def test_prune_deletes_only_the_binlog_before_the_oldest_kept_dump(
    binlog_setup: Callable[..., BinlogSetup],
) -> None:
    setup = binlog_setup(plan_extra={"retention": {"keep_last": 1}})
    setup.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    with running(setup.archiver()):
        wait_for(lambda: any(setup.spool.glob("mariadb-bin.*")), "mariadb-binlog to stream")
        assert backup(setup.resources).outcome.value == "ok"
        for number in range(1, 4):
            setup.execute(f"INSERT INTO orders VALUES ({number}, 'x')")
            setup.server.execute("FLUSH BINARY LOGS")
        assert backup(setup.resources).outcome.value == "ok"
        setup.execute("INSERT INTO orders VALUES (4, 'x')")
        last = datetime.now(UTC)
        wait_for(lambda: window_reaches(setup, last), "the window to reach the last commit")
    newest = setup.catalog.list_snapshots(setup.plan.name)[0]
    first_needed = parse_binlog_name(newest.artifacts[0].fingerprint["binlog"]["file"])
    assert first_needed is not None
    before = binlog_numbers(setup, "east")
    assert min(before) < first_needed.number  # binlog only the older dump needs
    result = prune(setup.resources)
    for store in ("east", "west"):
        assert binlog_numbers(setup, store) == [n for n in before if n >= first_needed.number]
    assert all(store.wal_deleted for store in result.stores)
    windows = binlog_store_windows(setup.catalog, setup.plan, setup.source)
    assert [w.problems for w in windows] == [[], []]
    assert {w.base_backups[0] for w in windows} == {newest.id}
