"""Many plans at once: the newest runs, snapshots and drills of every plan, found by a fixed
number of queries that agree with reading each plan's whole history; run totals kept as runs
finish; readers that never wait for SQLite's write lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from drkit.catalog import (
    BackupEntry,
    Catalog,
    CopyEntry,
    DrillInput,
    PlanPolicy,
    SnapshotRecord,
)

from .conftest import START, FakeClock, ManifestFactory

REGIONS = {"east": "us-east-1", "west": "eu-west-1", "nfs": "us-east-1"}


def add_history(
    catalog: Catalog, clock: FakeClock, make: ManifestFactory, plan: str, n: int
) -> None:
    """Hourly backups of ``plan`` whose copies vary: complete in all stores, in one store
    only, one found corrupt by a verify, one snapshot never completed; drills now and then."""
    for hour in range(n):
        clock.now = START + timedelta(hours=hour)
        run_id = catalog.start_run(plan, "backup")
        manifest = make(plan, taken_at=clock.now)
        status = "incomplete" if hour % 7 == 3 else "complete"
        catalog.record_snapshot(manifest, status=status, run_id=run_id)
        stores = ["east"] if hour % 5 == 4 else list(REGIONS)
        for store in stores:
            catalog.record_copy(manifest.snapshot_id, store, REGIONS[store], "complete", bytes=10)
        if hour % 6 == 5:
            catalog.record_verification(manifest.snapshot_id, "west", False, "sha256 mismatch")
        catalog.finish_run(run_id, "ok" if hour % 4 else "degraded")
        if hour % 3 == 0:
            catalog.record_drill(
                DrillInput(
                    plan=plan,
                    snapshot_id=manifest.snapshot_id,
                    store="east",
                    started_at=clock.now,
                    finished_at=clock.now + timedelta(minutes=1),
                    outcome="ok" if hour % 2 == 0 else "failed",
                    rto_seconds=60,
                )
            )


def meets(snapshot: SnapshotRecord, policy: PlanPolicy) -> bool:
    good = [c for c in snapshot.copies if c.status == "complete" and c.last_verify_ok is not False]
    return (
        snapshot.status == "complete"
        and len(good) >= policy.min_stores
        and len({c.region for c in good}) >= policy.min_regions
    )


POLICIES = [
    PlanPolicy("a", 1, 1, tuple(REGIONS)),
    PlanPolicy("b", 2, 2, tuple(REGIONS)),
    PlanPolicy("c", 3, 2, ("east", "west")),
    PlanPolicy("d", 4, 1, ("nfs",)),  # never met: more stores than any copy has
    PlanPolicy("empty", 1, 1, ("east",)),  # no history at all
]


def test_plan_states_agree_with_reading_every_plans_whole_history(
    catalog: Catalog, clock: FakeClock, make_manifest: ManifestFactory
) -> None:
    for policy, hours in zip(POLICIES[:4], (13, 17, 20, 9), strict=True):
        add_history(catalog, clock, make_manifest, policy.plan, hours)
    clock.now = START + timedelta(days=2)
    running = catalog.start_run("a", "backup")  # newest run, still running
    states = catalog.plan_states(POLICIES)

    for policy in POLICIES:
        state = states[policy.plan]
        history = catalog.list_snapshots(policy.plan)  # newest first, with copies
        expected = next((s for s in history if meets(s, policy)), None)
        assert (state.newest_complete.id if state.newest_complete else None) == (
            expected.id if expected else None
        ), policy
        if expected is not None and state.newest_complete is not None:
            assert state.newest_complete.copies == expected.copies
        for store in policy.stores:
            newest_there = next(
                (s.id for s in history if (c := s.copy_in(store)) and c.status == "complete"),
                None,
            )
            found = state.newest_in_store.get(store)
            assert (found.id if found else None) == newest_there
        runs = catalog.list_runs(policy.plan, "backup")
        job = state.job("backup")
        assert (job.last.id if job.last else None) == (runs[0].id if runs else None)
        finished = [r for r in runs if r.outcome != "running"]
        assert (job.finished.id if job.finished else None) == (finished[0].id if finished else None)
        ok = [r for r in runs if r.outcome == "ok"]
        assert (job.succeeded.id if job.succeeded else None) == (ok[0].id if ok else None)
        drills = catalog.list_drills(policy.plan)
        assert state.last_drill == (drills[0] if drills else None)
        passed = [d for d in drills if d.outcome == "ok"]
        assert state.last_passed_drill == (passed[0] if passed else None)
        assert (state.drill_verified.id if state.drill_verified else None) == (
            passed[0].snapshot_id if passed else None
        )
    assert states["a"].job("backup").last is not None
    assert states["a"].job("backup").last.id == running
    assert states["d"].newest_complete is None and states["empty"].job("backup").last is None


@contextmanager
def counted_statements(catalog: Catalog) -> Iterator[list[str]]:
    engine = catalog._database.engine
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_plan_states_take_the_same_number_of_queries_for_3_plans_and_for_60(
    catalog: Catalog, clock: FakeClock, make_manifest: ManifestFactory
) -> None:
    many = [PlanPolicy(f"plan-{n}", 1, 1, ("east", "west")) for n in range(60)]
    for policy in many:
        add_history(catalog, clock, make_manifest, policy.plan, 2)
    with counted_statements(catalog) as few_statements:
        catalog.plan_states(many[:3])
    with counted_statements(catalog) as many_statements:
        states = catalog.plan_states(many)
    assert len(many_statements) == len(few_statements) > 0
    assert all(states[p.plan].newest_complete is not None for p in many)


def test_run_totals_count_finished_and_orphaned_runs_by_outcome_and_duration(
    catalog: Catalog, clock: FakeClock
) -> None:
    for seconds, outcome in ((0.5, "ok"), (30, "ok"), (30, "failed"), (4000, "ok")):
        run_id = catalog.start_run("api", "backup")
        clock.advance(seconds)
        catalog.finish_run(run_id, outcome, summary={"stored_bytes": 100})
    totals = catalog.run_totals(["api", "other"])
    ok = totals[("api", "backup", "ok")]
    assert (ok.runs, ok.bytes) == (3, 300)
    assert ok.seconds == pytest.approx(4030.5)
    assert (ok.buckets[1.0], ok.buckets[60.0], ok.buckets[3600.0], ok.buckets[float("inf")]) == (
        1,
        2,
        2,
        3,
    )
    assert totals[("api", "backup", "failed")].runs == 1
    assert not [key for key in totals if key[0] == "other"]


def test_a_reader_does_not_wait_for_a_sqlite_writer(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "catalog.db"
    with Catalog.open(f"sqlite:///{path}", clock=clock) as catalog:
        catalog.finish_run(catalog.start_run("api", "backup"), "ok")
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # another runner in the middle of a write
        writer.execute(
            "INSERT INTO locks VALUES ('x', 'o', '2026-01-01', '2026-01-01', '2026-01-01')"
        )
        found: list[object] = []
        reader = threading.Thread(
            target=lambda: found.append(
                (catalog.list_runs("api"), catalog.plan_states([PlanPolicy("api")]))
            )
        )
        reader.start()
        reader.join(timeout=20)  # a reader waiting for the write lock would wait 30 s
        alive = reader.is_alive()
        writer.execute("ROLLBACK")
        writer.close()
        reader.join()
    assert not alive
    [(runs, states)] = found
    assert [run.outcome for run in runs] == ["ok"]  # type: ignore[attr-defined]
    assert states["api"].job("backup").succeeded is not None  # type: ignore[index]


def test_imported_backups_read_back_as_if_recorded_one_by_one(
    catalog: Catalog, clock: FakeClock, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    entries = []
    for hour in range(6):
        taken = START + timedelta(hours=hour)
        manifest = make_manifest("api", taken_at=taken)
        copies = (
            CopyEntry("east", "us-east-1", "complete", 100),
            CopyEntry("west", "eu-west-1", "failed" if hour == 2 else "complete", 100),
        )
        entries.append(
            BackupEntry(
                manifest,
                taken,
                taken + timedelta(seconds=42),
                "degraded" if hour == 2 else "ok",
                "complete",
                copies,
                "host",
                7,
            )
        )
    run_ids = catalog.import_backups(entries)

    with Catalog.open(f"sqlite:///{tmp_path / 'one-by-one.db'}", clock=clock) as reference:
        for entry in entries:
            clock.now = entry.started_at
            run_id = reference.start_run("api", "backup")
            reference.record_snapshot(entry.manifest, status=entry.status, run_id=run_id)
            for copy in entry.copies:
                reference.record_copy(
                    entry.manifest.snapshot_id,
                    copy.store,
                    copy.region,
                    copy.status,
                    bytes=copy.bytes,
                )
            clock.now = entry.finished_at
            stored = sum(c.bytes for c in entry.copies if c.status == "complete")
            reference.finish_run(run_id, entry.outcome, summary={"stored_bytes": stored})
        expected_snapshots = reference.list_snapshots("api")
        expected_runs = reference.list_runs("api")
        expected_totals = reference.run_totals(["api"])

    def same(snapshot: SnapshotRecord) -> SnapshotRecord:
        return replace(snapshot, run_id=None)

    assert [same(s) for s in catalog.list_snapshots("api")] == [same(s) for s in expected_snapshots]
    runs = catalog.list_runs("api")
    assert [r.id for r in runs] == run_ids[::-1]
    assert [(r.started_at, r.finished_at, r.outcome, r.summary) for r in runs] == [
        (r.started_at, r.finished_at, r.outcome, r.summary) for r in expected_runs
    ]
    assert catalog.run_totals(["api"]) == expected_totals
