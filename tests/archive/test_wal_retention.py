"""Prune keeps exactly the WAL the kept base backups need: with keep_last 1, the WAL before the
newest base backup's start goes from every store, the window then starts at that backup and
stays whole, and nothing goes while a restore of the plan is running."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drkit.actions.backup import backup
from drkit.actions.prune import prune
from drkit.archive.ledger import store_windows
from drkit.archive.objects import objects_from_keys, wal_prefix
from drkit.archive.walnames import parse_lsn, parse_segment_name, segment_of
from tests.archive.conftest import PitrSetup, archiving
from tests.archive.test_point_in_time import (
    commit,
    insert_across_segments,
    stream_and_back_up,
    wait_for,
    window_reaches,
)

pytestmark = pytest.mark.slow


def segment_numbers(setup: PitrSetup, store: str) -> list[int]:
    repository_store = setup.resources.repository.store(store)
    keys = repository_store.list(wal_prefix(setup.plan.name, "orders"))
    found = objects_from_keys(setup.plan.name, "orders", keys)
    return sorted(parse_segment_name(o.name).number for o in found if o.kind == "segment")


def test_prune_deletes_only_the_wal_before_the_oldest_kept_base_backup(
    pitr_setup: Callable[..., PitrSetup],
) -> None:
    setup = pitr_setup(plan_extra={"retention": {"keep_last": 1}})
    commit(setup, "CREATE TABLE orders (id int PRIMARY KEY)")
    with archiving(setup):
        stream_and_back_up(setup)
        insert_across_segments(setup, range(1, 4))
        assert backup(setup.resources).outcome.value == "ok"
        commit(setup, "SELECT pg_switch_wal()")
        last = commit(setup, "INSERT INTO orders VALUES (4)")
        wait_for(lambda: window_reaches(setup, last), "the window to reach the last commit")
    newest = setup.catalog.list_snapshots(setup.plan.name)[0]
    first_needed = segment_of(
        parse_lsn(newest.artifacts[0].fingerprint["base_backup"]["start_lsn"])
    )
    before = segment_numbers(setup, "east")
    assert min(before) < first_needed  # there is WAL only the older backup needs

    reading = setup.catalog.start_run(setup.plan.name, "restore")  # a restore reading WAL
    assert all(store.wal_deleted == [] for store in prune(setup.resources).stores)
    assert segment_numbers(setup, "east") == before

    setup.catalog.finish_run(reading, outcome="ok")
    result = prune(setup.resources)
    for store in ("east", "west"):
        kept = segment_numbers(setup, store)
        assert kept == [n for n in before if n >= first_needed]
    assert all(store.wal_deleted for store in result.stores)
    windows = store_windows(setup.catalog, setup.plan, setup.source)
    assert [w.problems for w in windows] == [[], []]
    assert {w.base_backups[0] for w in windows} == {newest.id}
