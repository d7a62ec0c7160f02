"""A backup's snapshot and its copies go into the catalog in one transaction: all of it, or
(when one copy cannot be recorded) none of it."""

from __future__ import annotations

import pytest

from drkit.catalog import Catalog, CopyInput

from .conftest import ManifestFactory


def test_the_snapshot_and_every_copy_are_recorded_together(
    catalog: Catalog, make_manifest: ManifestFactory
) -> None:
    run_id = catalog.start_run("test-api", "backup")
    manifest = make_manifest("test-api")
    copies = [
        CopyInput("east", "us-east-1", "complete", bytes=10, manifest_sha256="a" * 64),
        CopyInput("west", "eu-west-1", "failed", error="disk full\nretry later"),
    ]
    catalog.record_backup(
        manifest, status="complete", run_id=run_id, manifest_sha256="a" * 64, copies=copies
    )
    record = catalog.get_snapshot(manifest.snapshot_id)
    assert record is not None and record.status == "complete"
    assert record.complete_stores() == ["east"]
    west = record.copy_in("west")
    assert west is not None and west.status == "failed" and west.error == "disk full"


def test_a_copy_that_cannot_be_recorded_leaves_no_snapshot_behind(
    catalog: Catalog, make_manifest: ManifestFactory
) -> None:
    manifest = make_manifest("test-api")
    with pytest.raises(ValueError, match="copy status"):
        catalog.record_backup(
            manifest,
            status="complete",
            run_id=None,
            manifest_sha256=None,
            copies=[CopyInput("east", None, "complete"), CopyInput("west", None, "bogus")],
        )
    assert catalog.get_snapshot(manifest.snapshot_id) is None
