"""Snapshots with their artifacts and per-store copies, and rebuilding from store manifests."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from drkit.catalog import Catalog
from drkit.errors import SnapshotNotFound
from drkit.repository.manifest import sha256_hex

from .conftest import START, FakeClock, ManifestFactory


def test_recorded_snapshot_lists_with_copies_and_artifacts(
    catalog: Catalog, make_manifest: ManifestFactory
) -> None:
    run_id = catalog.start_run("api", "backup")
    manifest = make_manifest()
    catalog.record_snapshot(manifest, status="pending", run_id=run_id, manifest_sha256="e" * 64)
    catalog.record_copy(manifest.snapshot_id, "s3-east", "us-east-1", "complete", bytes=1010)
    catalog.record_copy(
        manifest.snapshot_id, "s3-west", "us-west-2", "failed", error="timeout\nretry 3 of 3"
    )
    catalog.set_snapshot_status(manifest.snapshot_id, "complete")

    [snapshot] = catalog.list_snapshots("api")
    assert (snapshot.id, snapshot.status, snapshot.run_id) == (
        manifest.snapshot_id,
        "complete",
        run_id,
    )
    assert snapshot.manifest_sha256 == "e" * 64
    assert snapshot.taken_at == START and snapshot.taken_at.tzinfo is UTC
    assert snapshot.sources == ("db", "config")
    assert snapshot.plaintext_size == 1002 + 1006
    assert snapshot.size == 502 + 506
    assert snapshot.complete_stores() == ["s3-east"]
    west = snapshot.copy_in("s3-west")
    assert west is not None and (west.status, west.error) == ("failed", "timeout")
    db = next(artifact for artifact in snapshot.artifacts if artifact.source == "db")
    assert db.format == "pg_dump-custom"
    assert db.fingerprint == {"tables": {"users": 3}}
    assert db.key_names == ("primary", "escrow")
    assert db.encrypted_key == f"api/snapshots/{manifest.snapshot_id}/db.drkit"
    assert db.raw_key is None


def test_snapshots_list_newest_first_and_since_filters(
    catalog: Catalog, make_manifest: ManifestFactory
) -> None:
    older = make_manifest(taken_at=START)
    newer = make_manifest(taken_at=START + timedelta(hours=1))
    catalog.record_snapshot(older, status="complete")
    catalog.record_snapshot(newer, status="complete")
    catalog.record_snapshot(make_manifest("billing"), status="complete")
    assert [s.id for s in catalog.list_snapshots("api")] == [newer.snapshot_id, older.snapshot_id]
    since = START + timedelta(minutes=30)
    assert [s.id for s in catalog.list_snapshots("api", since=since)] == [newer.snapshot_id]


def test_recording_a_snapshot_again_replaces_its_artifacts_and_keeps_its_run(
    catalog: Catalog, make_manifest: ManifestFactory
) -> None:
    run_id = catalog.start_run("api", "backup")
    first = make_manifest(sources=("db", "config"))
    catalog.record_snapshot(first, status="pending", run_id=run_id)
    second = make_manifest(sources=("db", "cache"), snapshot_id=first.snapshot_id)
    catalog.record_snapshot(second, status="incomplete")
    snapshot = catalog.get_snapshot(first.snapshot_id)
    assert snapshot is not None
    assert sorted(artifact.source for artifact in snapshot.artifacts) == ["cache", "db"]
    assert (snapshot.status, snapshot.run_id) == ("incomplete", run_id)


def test_copy_upsert_verification_and_deletion(
    catalog: Catalog, make_manifest: ManifestFactory, clock: FakeClock
) -> None:
    manifest = make_manifest()
    catalog.record_snapshot(manifest, status="complete")
    catalog.record_copy(manifest.snapshot_id, "nfs", None, "uploading")
    catalog.record_copy(
        manifest.snapshot_id, "nfs", None, "complete", bytes=7, manifest_sha256="d" * 64
    )
    clock.advance(60)
    catalog.record_verification(manifest.snapshot_id, "nfs", False, "sha256 mismatch in db.drkit")
    snapshot = catalog.get_snapshot(manifest.snapshot_id)
    assert snapshot is not None and len(snapshot.copies) == 1
    copy = snapshot.copies[0]
    assert (copy.status, copy.bytes, copy.manifest_sha256) == ("complete", 7, "d" * 64)
    assert (copy.last_verify_ok, copy.last_verified_at) == (False, clock.now)
    assert copy.last_verify_error == "sha256 mismatch in db.drkit"
    assert snapshot.complete_stores() == ["nfs"] and snapshot.healthy_stores() == []

    assert catalog.mark_copy_deleted(manifest.snapshot_id, "nfs") is True
    assert catalog.mark_copy_deleted(manifest.snapshot_id, "elsewhere") is False
    snapshot = catalog.get_snapshot(manifest.snapshot_id)
    assert snapshot is not None and snapshot.copies[0].status == "deleted"
    assert snapshot.complete_stores() == []


def test_copies_and_statuses_of_unknown_snapshots_are_refused(catalog: Catalog) -> None:
    with pytest.raises(SnapshotNotFound):
        catalog.record_copy("20261127T153000.000Z-000000", "nfs", None, "complete")
    with pytest.raises(SnapshotNotFound):
        catalog.set_snapshot_status("20261127T153000.000Z-000000", "complete")
    with pytest.raises(SnapshotNotFound):
        catalog.record_verification("20261127T153000.000Z-000000", "nfs", True)


def test_delete_snapshot_removes_its_copies_and_artifacts(
    catalog: Catalog, make_manifest: ManifestFactory
) -> None:
    manifest = make_manifest()
    catalog.record_snapshot(manifest, status="complete")
    catalog.record_copy(manifest.snapshot_id, "nfs", None, "complete")
    assert catalog.delete_snapshot(manifest.snapshot_id) is True
    assert catalog.get_snapshot(manifest.snapshot_id) is None
    assert catalog.delete_snapshot(manifest.snapshot_id) is False
    catalog.record_snapshot(manifest, status="complete")  # no leftover rows collide
    snapshot = catalog.get_snapshot(manifest.snapshot_id)
    assert snapshot is not None and snapshot.copies == () and len(snapshot.artifacts) == 2


def test_rebuild_records_store_manifests_and_is_idempotent(
    catalog: Catalog, make_manifest: ManifestFactory
) -> None:
    first = make_manifest(taken_at=START)
    second = make_manifest(taken_at=START + timedelta(hours=1))
    held = [
        ("s3-east", "us-east-1", first, sha256_hex(first.to_json_bytes())),
        ("s3-east", "us-east-1", second, sha256_hex(second.to_json_bytes())),
        ("nfs", "local", second, sha256_hex(second.to_json_bytes())),
    ]
    assert catalog.rebuild("api", held) == [first.snapshot_id, second.snapshot_id]
    rebuilt = catalog.list_snapshots("api")
    assert [s.id for s in rebuilt] == [second.snapshot_id, first.snapshot_id]
    assert rebuilt[0].complete_stores() == ["nfs", "s3-east"]
    assert rebuilt[1].complete_stores() == ["s3-east"]
    assert all(s.status == "complete" and s.run_id is None for s in rebuilt)
    assert rebuilt[0].copy_in("nfs") is not None

    assert catalog.rebuild("api", held) == []
    assert catalog.list_snapshots("api") == rebuilt


def test_rebuild_completes_a_snapshot_a_run_left_pending_and_keeps_the_run(
    catalog: Catalog, make_manifest: ManifestFactory
) -> None:
    run_id = catalog.start_run("api", "backup")
    manifest = make_manifest()
    catalog.record_snapshot(manifest, status="pending", run_id=run_id)
    catalog.record_copy(manifest.snapshot_id, "nfs", None, "uploading")
    sha = sha256_hex(manifest.to_json_bytes())
    assert catalog.rebuild("api", [("nfs", "local", manifest, sha)]) == []
    snapshot = catalog.get_snapshot(manifest.snapshot_id)
    assert snapshot is not None
    assert (snapshot.status, snapshot.run_id, snapshot.complete_stores()) == (
        "complete",
        run_id,
        ["nfs"],
    )


def test_rebuild_refuses_another_plans_manifest(
    catalog: Catalog, make_manifest: ManifestFactory
) -> None:
    other = make_manifest("billing")
    with pytest.raises(ValueError, match="billing"):
        catalog.rebuild("api", [("nfs", "local", other, "e" * 64)])
    assert catalog.list_snapshots("billing") == []
