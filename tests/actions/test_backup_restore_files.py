"""Backup, verify, restore and rebuild end to end on SQLite + config files and two filesystem
stores: the commit protocol, encryption at rest, failover and integrity, without servers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drkit.actions.backup import backup
from drkit.actions.rebuild import rebuild_catalog
from drkit.actions.resources import Resources
from drkit.actions.restore import RestoreRequest, execute_restore, prepare_restore
from drkit.actions.tracking import tracked_run
from drkit.actions.verify import verify
from drkit.catalog import Catalog
from drkit.errors import IntegrityError, RefusedError, SnapshotNotFound
from drkit.outcome import Outcome
from drkit.repository import choose_snapshot, find_snapshots
from drkit.repository.layout import manifest_key

from .conftest import MARKER


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def count_orders(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM orders").fetchone()[0])
    finally:
        connection.close()


def test_backup_ships_ciphertext_to_every_store_and_commits_manifests(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
    catalog: Catalog,
) -> None:
    resources = make_resources(two_regions)
    result = backup(resources)
    assert result.outcome is Outcome.OK, result.error
    for store in ("east", "west"):
        root = tmp_path / "stores" / store
        assert (root / manifest_key("test-api", result.snapshot_id)).exists()
        for path in all_files(root):  # manifests included: they are sealed too
            content = path.read_bytes()
            for secret in (MARKER, "orders", "customers", "app.yaml", "features.yaml"):
                assert secret.encode() not in content, (path, secret)
    [record] = catalog.list_snapshots("test-api")
    assert record.id == result.snapshot_id and record.status == "complete"
    assert sorted(record.complete_stores()) == ["east", "west"]
    assert {a.source for a in record.artifacts} == {"app-db", "app-config"}


def test_verify_passes_then_names_the_store_with_a_flipped_byte(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
) -> None:
    resources = make_resources(two_regions)
    result = backup(resources)
    assert verify(resources).ok
    victim = next(p for p in all_files(tmp_path / "stores" / "west") if p.suffix == ".drkit")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    checked = verify(resources, snapshot_id=result.snapshot_id)
    assert not checked.ok
    [bad] = [c for c in checked.checks if not c.ok]
    assert bad.store == "west" and "corrupt" in (bad.error or "")
    assert [c.store for c in checked.checks if c.ok] == ["east"]


def test_restore_into_new_targets_gives_identical_data(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
) -> None:
    resources = make_resources(two_regions)
    backup(resources)
    target_db, target_dir = tmp_path / "restored" / "app.db", tmp_path / "restored" / "config"
    targets = {"app-db": str(target_db), "app-config": str(target_dir)}
    request = RestoreRequest(targets=targets)
    dry_run = RestoreRequest(targets=targets, dry_run=True)
    assert prepare_restore(resources, dry_run).prediction is None  # nothing to go by yet
    heard: list[tuple[str, str, int, int]] = []
    with tracked_run(resources, "restore") as tracker:  # recorded as `drkit restore` does
        prepared = execute_restore(
            resources,
            prepare_restore(resources, request),
            force=False,
            progress=lambda *update: heard.append(update),
        )
        tracker.summary = prepared.to_json()
    assert all(not item.differences for item in prepared.items)
    predicted = prepare_restore(resources, dry_run).prediction  # from the restore just done
    assert predicted is not None and predicted.runs == 1
    assert set(predicted.phases) == {"locate", "fetch", "decrypt", "load", "verify"}
    for item in prepared.items:  # progress: each source's phases, bytes up to their totals
        mine = [update for update in heard if update[0] == item.source]
        assert mine[0][1] == "fetch" and mine[-1][1] == "load"
        fetched = [update for update in mine if update[1] == "fetch"][-1]
        decrypted = [update for update in mine if update[1] == "decrypt"][-1]
        assert fetched[2] == fetched[3] > 0 and decrypted[2] == decrypted[3] == item.size
    assert count_orders(target_db) == count_orders(backend["database"])
    restored_config = target_dir / str(backend["config"]).lstrip("/")
    assert (restored_config / "app.yaml").read_text() == (
        backend["config"] / "app.yaml"
    ).read_text()
    assert (restored_config / "current.yaml").is_symlink()
    assert set(prepared.phases) >= {"locate", "fetch", "decrypt", "load", "verify"}


def test_restore_fails_over_when_the_first_copy_is_corrupt(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
) -> None:
    resources = make_resources(two_regions)
    backup(resources)
    for path in all_files(tmp_path / "stores" / "east"):
        if path.name.startswith("app-db") and path.suffix == ".drkit":
            data = bytearray(path.read_bytes())
            data[-5] ^= 0xFF
            path.write_bytes(bytes(data))
    target = tmp_path / "restored.db"
    request = RestoreRequest(sources=["app-db"], targets={"app-db": str(target)})
    prepared = execute_restore(resources, prepare_restore(resources, request), force=False)
    [item] = prepared.items
    assert item.store == "west"
    assert item.failovers and item.failovers[0].startswith("east:")
    assert count_orders(target) == count_orders(backend["database"])


def test_restore_refuses_when_every_copy_is_corrupt_and_touches_nothing(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
) -> None:
    resources = make_resources(two_regions)
    backup(resources)
    for path in all_files(tmp_path / "stores"):
        if path.name.startswith("app-db") and path.suffix == ".drkit":
            path.write_bytes(path.read_bytes()[:-100])  # truncated everywhere
    target = tmp_path / "restored.db"
    request = RestoreRequest(sources=["app-db"], targets={"app-db": str(target)})
    with pytest.raises(IntegrityError, match="no store could deliver app-db"):
        execute_restore(resources, prepare_restore(resources, request), force=False)
    assert not target.exists()


def test_non_empty_target_is_refused_without_force(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
) -> None:
    resources = make_resources(two_regions)
    backup(resources)
    with pytest.raises(RefusedError, match="app-db"):
        prepare_restore(resources, RestoreRequest(sources=["app-db"]))
    prepared = prepare_restore(resources, RestoreRequest(sources=["app-db"], force=True))
    assert prepared.items[0].replaces


def test_restore_without_catalog_and_rebuild_brings_back_the_same_list(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
) -> None:
    resources = make_resources(two_regions)
    first, second = backup(resources), backup(resources)
    listed = [e.snapshot_id for e in find_snapshots(resources.repository, resources.catalog)]
    assert listed == [second.snapshot_id, first.snapshot_id]
    storeless = make_resources(two_regions, with_catalog=False)
    assert [
        e.snapshot_id for e in find_snapshots(storeless.repository, storeless.catalog)
    ] == listed
    target = tmp_path / "from-stores.db"
    request = RestoreRequest(sources=["app-db"], targets={"app-db": str(target)})
    execute_restore(storeless, prepare_restore(storeless, request), force=False)
    assert count_orders(target) == count_orders(backend["database"])
    with Catalog.open(f"sqlite:///{tmp_path / 'fresh-catalog.db'}") as fresh:
        rebuilt = Resources(storeless.plan, storeless.repository, fresh)
        result = rebuild_catalog(rebuilt, store_name="west")
        assert sorted(result.snapshots) == sorted(listed)
        assert [s.id for s in fresh.list_snapshots("test-api")] == listed


def test_before_picks_the_newest_snapshot_taken_earlier(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
) -> None:
    from datetime import timedelta

    resources = make_resources(two_regions)
    first, second = backup(resources), backup(resources)
    entries = find_snapshots(resources.repository, resources.catalog)
    assert choose_snapshot(entries, before=second.taken_at).snapshot_id == first.snapshot_id
    assert (
        choose_snapshot(entries, before=second.taken_at + timedelta(seconds=1)).snapshot_id
        == second.snapshot_id
    )
    with pytest.raises(SnapshotNotFound):
        choose_snapshot(entries, before=first.taken_at)


def test_a_failing_source_commits_nothing_anywhere(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
    catalog: Catalog,
) -> None:
    sources = [
        {"name": "app-db", "type": "sqlite", "path": str(backend["database"])},
        {"name": "gone", "type": "sqlite", "path": str(tmp_path / "missing.db")},
    ]
    resources = make_resources(two_regions, sources=sources)
    result = backup(resources)
    assert result.outcome is Outcome.FAILED and "missing.db" in (result.error or "")
    assert not [p for p in all_files(tmp_path / "stores") if p.name == "manifest.json"]
    assert not [p for p in all_files(tmp_path / "stores") if "app-db" in p.name]
    assert catalog.list_snapshots("test-api") == []
    [run] = catalog.list_runs("test-api", "backup")
    assert run.outcome == "failed"
