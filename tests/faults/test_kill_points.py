"""`drkit backup` killed with SIGKILL at 20+ points spread through a backup (while pg_dump
runs, mid-upload, between artifacts, around the manifest writes), chosen from outside the
process: by the files appearing in the stores, by the bytes it has written, and by time.
After every kill nothing looks complete that is not; afterwards `verify`, `snapshots` and the
next backup agree. SIGTERM, once, takes the orderly way out: exit 130, run interrupted."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from drkit.catalog import Catalog
from drkit.errors import ExitCode
from drkit.repository.layout import MANIFEST_NAME

from .conftest import Setup, filesystem_stores, fill_postgres, make_setup
from .helpers import (
    TEMP_SUFFIX,
    Observation,
    Trigger,
    assert_catalog_claims_only_what_stores_hold,
    assert_manifests_vouch_for_their_artifacts,
    committed_snapshots,
    json_output,
    run_drkit,
    start_drkit,
    uncommitted_leftovers,
    watch,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
PG_ROWS = 25_000  # about 3.5 MB of dump, 2 MB stored: several 1 MiB chunks per store


@pytest.fixture
def setup(tmp_path: Path, postgres_database: str) -> Setup:
    """PostgreSQL first (the long dump), then SQLite and config files; two stores."""
    fill_postgres(postgres_database, PG_ROWS)
    backend = tmp_path / "backend"
    sources = [
        {"name": "orders-pg", "type": "postgresql", "url": postgres_database},
        {"name": "app-db", "type": "sqlite", "path": str(backend / "app.db")},
        {"name": "app-config", "type": "files", "paths": [str(backend / "config")]},
    ]
    return make_setup(tmp_path, filesystem_stores(tmp_path, "east", "west"), sources=sources)


def backup_and_watch(
    setup: Setup, trigger: Trigger, send: signal.Signals = signal.SIGKILL
) -> tuple[Observation, bool, int, str]:
    process = start_drkit(setup.catalog, "backup", "--json", str(setup.plan))
    observation, signalled = watch(process, list(setup.stores.values()), trigger, send=send)
    _, stderr = process.communicate(timeout=60)
    return observation, signalled, process.returncode, stderr


def after_seconds(delay: float) -> Trigger:
    return lambda seen: seen.seconds >= delay


def after_files(count: int) -> Trigger:
    return lambda seen: len(seen.events) >= count


def after_written(threshold: int) -> Trigger:
    return lambda seen: seen.wchar >= threshold


def kill_points(baseline: Observation) -> list[tuple[str, Trigger]]:
    """Where to kill, from a complete run: at each file the backup makes appear in a store
    (temporary files mid-upload, finished artifacts, manifests before and after their rename),
    at evenly spaced amounts of bytes written, and at two early moments."""
    points = [
        (f"after {baseline.seconds * f:.2f}s", after_seconds(baseline.seconds * f))
        for f in (0.15, 0.35)
    ]
    for number, event in enumerate(baseline.events, start=1):
        points.append((f"store file {number} ({event.rsplit('/', 1)[-1]})", after_files(number)))
    steps = max(5, 22 - len(points))  # a fast machine may show fewer temporary files
    for step in range(1, steps + 1):
        threshold = baseline.wchar * step // (steps + 1)
        points.append((f"wchar {threshold}", after_written(threshold)))
    return points


def check_nothing_false_looks_complete(setup: Setup, label: str) -> set[str]:
    """The invariants of the commit protocol, after a kill at ``label``."""
    for root in setup.stores.values():
        assert_manifests_vouch_for_their_artifacts(root)
    complete = assert_catalog_claims_only_what_stores_hold(setup.catalog, setup.stores)
    leftovers = [p for root in setup.stores.values() for p in root.rglob(f"*{MANIFEST_NAME}*")]
    assert all(p.name == MANIFEST_NAME or p.name.endswith(TEMP_SUFFIX) for p in leftovers), label
    return complete


def test_sigkill_anywhere_in_a_backup_leaves_nothing_that_looks_complete(setup: Setup) -> None:
    baseline, _, code, stderr = backup_and_watch(setup, lambda seen: False)
    assert code == 0, stderr
    assert len(baseline.events) >= 10, baseline.events  # temporary files and artifacts seen
    killed = []
    for label, trigger in kill_points(baseline):
        _, signalled, code, stderr = backup_and_watch(setup, trigger)
        if signalled:
            assert code == -signal.SIGKILL, (label, stderr)
            killed.append(label)
        else:
            assert code == 0, (label, stderr)  # it finished first: then it must have succeeded
        check_nothing_false_looks_complete(setup, label)
        # the next command on the plan removes what the killed backup left in the stores
        listed = run_drkit(setup.catalog, "snapshots", "--json", str(setup.plan))
        assert listed.returncode == 0, (label, listed.stderr)
        for root in setup.stores.values():
            assert uncommitted_leftovers(root) == [], label
    assert len(killed) >= 20, killed

    for store, root in setup.stores.items():
        listed = run_drkit(setup.catalog, "snapshots", "--json", "--store", store, str(setup.plan))
        assert listed.returncode == 0, listed.stderr
        ids = {entry["snapshot_id"] for entry in json_output(listed)}
        assert ids == set(committed_snapshots(root)), store
        checked = run_drkit(setup.catalog, "verify", "--all", "--store", store, str(setup.plan))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.count(": ok (3 objects)") == len(ids), checked.stdout
    from_catalog = run_drkit(setup.catalog, "snapshots", "--json", str(setup.plan))
    for entry in json_output(from_catalog):
        for store in entry["stores"]:
            assert entry["snapshot_id"] in committed_snapshots(setup.stores[store])

    after = run_drkit(setup.catalog, "backup", "--json", str(setup.plan))
    assert after.returncode == 0, after.stderr
    assert json_output(after)["outcome"] == "ok"


def test_sigterm_mid_upload_stops_in_order_and_records_the_run_interrupted(
    setup: Setup,
) -> None:
    def mid_upload(seen: Observation) -> bool:
        return any(event.endswith(TEMP_SUFFIX) for event in seen.events) and seen.wchar > 1 << 20

    observation, signalled, code, stderr = backup_and_watch(setup, mid_upload, signal.SIGTERM)
    assert signalled, observation
    assert code == ExitCode.INTERRUPTED, stderr
    assert "interrupted" in stderr
    with Catalog.open(setup.catalog) as catalog:
        [run] = catalog.list_runs("test-api", "backup")
        assert run.outcome == "interrupted"
        assert catalog.list_snapshots("test-api") == []
    for root in setup.stores.values():
        assert committed_snapshots(root) == {}
        assert not [p for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIX)]
    after = run_drkit(setup.catalog, "backup", "--json", str(setup.plan))
    assert after.returncode == 0, after.stderr
