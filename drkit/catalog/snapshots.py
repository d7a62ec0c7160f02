"""Snapshots, their artifacts and their copies (one per store), recorded from manifests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, selectinload

from drkit.catalog.database import one_line
from drkit.catalog.models import ArtifactRow, Copy, Snapshot
from drkit.catalog.records import (
    ArtifactLike,
    ArtifactRecord,
    CopyRecord,
    CopyStatus,
    ManifestLike,
    SnapshotRecord,
    SnapshotStatus,
    check_choice,
)
from drkit.errors import SnapshotNotFound


def record_snapshot(
    session: Session,
    manifest: ManifestLike,
    status: str,
    run_id: int | None,
    manifest_sha256: str | None = None,
) -> Snapshot:
    """Insert or update the snapshot a manifest describes, with exactly its artifacts.

    ``manifest_sha256`` is the hash of the manifest's bytes as stores hold them.
    """
    check_choice(SnapshotStatus, status, "snapshot status")
    snapshot = session.get(Snapshot, manifest.snapshot_id)
    if snapshot is None:
        snapshot = Snapshot(id=manifest.snapshot_id, run_id=run_id)
        session.add(snapshot)
    elif run_id is not None:
        snapshot.run_id = run_id
    snapshot.manifest_sha256 = manifest_sha256
    snapshot.plan = manifest.plan
    snapshot.taken_at = manifest.taken_at
    snapshot.finished_at = manifest.finished_at
    snapshot.status = status
    snapshot.sources = list(manifest.sources)
    snapshot.plaintext_size = sum(artifact.plaintext_size for artifact in manifest.artifacts)
    snapshot.size = stored_size(manifest)
    sync_artifacts(snapshot, manifest.artifacts)
    return snapshot


def stored_size(manifest: ManifestLike) -> int:
    """Bytes one store holds for the snapshot: the encrypted objects, or raw ones for stores
    (restic) that only take raw objects."""
    total = 0
    for artifact in manifest.artifacts:
        stored = artifact.encrypted or artifact.raw
        total += stored.size if stored is not None else 0
    return total


def sync_artifacts(snapshot: Snapshot, artifacts: Sequence[ArtifactLike]) -> None:
    # update rows in place: replacing them would insert before deleting the same primary key
    existing = {row.source: row for row in snapshot.artifacts}
    wanted = {artifact.source for artifact in artifacts}
    for source, row in existing.items():
        if source not in wanted:
            snapshot.artifacts.remove(row)
    for artifact in artifacts:
        row = existing.get(artifact.source) or ArtifactRow(source=artifact.source)
        if artifact.source not in existing:
            snapshot.artifacts.append(row)
        fill_artifact_row(row, artifact)


def fill_artifact_row(row: ArtifactRow, artifact: ArtifactLike) -> None:
    for column, value in artifact_values(artifact).items():
        setattr(row, column, value)


def artifact_values(artifact: ArtifactLike) -> dict[str, Any]:
    """An artifact row's columns (but its snapshot's id) for ``artifact``."""
    encrypted, raw = artifact.encrypted, artifact.raw
    return {
        "source": artifact.source,
        "type": artifact.type,
        "format": artifact.format,
        "compression": artifact.compression,
        "plaintext_size": artifact.plaintext_size,
        "plaintext_sha256": artifact.plaintext_sha256,
        "fingerprint": dict(artifact.fingerprint),
        "key_names": list(artifact.key_names),
        "encrypted_key": encrypted.key if encrypted else None,
        "encrypted_size": encrypted.size if encrypted else None,
        "encrypted_sha256": encrypted.sha256 if encrypted else None,
        "raw_key": raw.key if raw else None,
        "raw_size": raw.size if raw else None,
        "raw_sha256": raw.sha256 if raw else None,
    }


def require_snapshot(session: Session, snapshot_id: str) -> Snapshot:
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None:
        raise SnapshotNotFound(f"snapshot {snapshot_id} is not in the catalog")
    return snapshot


def set_snapshot_status(session: Session, snapshot_id: str, status: str) -> None:
    check_choice(SnapshotStatus, status, "snapshot status")
    require_snapshot(session, snapshot_id).status = status


def record_copy(
    session: Session,
    snapshot_id: str,
    store: str,
    region: str | None,
    status: str,
    *,
    error: str | None,
    size: int,
    manifest_sha256: str | None,
) -> None:
    """Insert or update the snapshot's copy in ``store``."""
    check_choice(CopyStatus, status, "copy status")
    require_snapshot(session, snapshot_id)
    copy = session.get(Copy, (snapshot_id, store))
    if copy is None:
        copy = Copy(snapshot_id=snapshot_id, store=store)
        session.add(copy)
    copy.region = region
    copy.status = status
    copy.error = one_line(error) if error else None
    copy.bytes = size
    if manifest_sha256 is not None:
        copy.manifest_sha256 = manifest_sha256
    count_good_copies(session, snapshot_id)


GOOD_COPIES = (
    "FROM copies c WHERE c.snapshot_id = :id AND c.status = 'complete' "
    "AND (c.last_verify_ok IS NULL OR c.last_verify_ok = :yes)"
)
_COUNT_GOOD = text(
    f"UPDATE snapshots SET good_copies = (SELECT count(*) {GOOD_COPIES}), "
    f"good_regions = (SELECT count(DISTINCT coalesce(c.region, '')) {GOOD_COPIES}) "
    "WHERE id = :id"
)


def count_good_copies(session: Session, snapshot_id: str) -> None:
    """Recount the snapshot's complete, undamaged copies and their regions (after any change
    to its copies), which the copy policy is checked against."""
    session.flush()
    session.execute(_COUNT_GOOD, {"id": snapshot_id, "yes": True})


def require_copy(session: Session, snapshot_id: str, store: str) -> Copy:
    copy = session.get(Copy, (snapshot_id, store))
    if copy is None:
        raise SnapshotNotFound(f"the catalog knows no copy of snapshot {snapshot_id} in {store}")
    return copy


def record_verification(
    session: Session, snapshot_id: str, store: str, ok: bool, error: str | None, now: datetime
) -> None:
    copy = require_copy(session, snapshot_id, store)
    copy.last_verified_at = now
    copy.last_verify_ok = ok
    copy.last_verify_error = one_line(error) if error else None
    count_good_copies(session, snapshot_id)


def mark_copy_deleted(session: Session, snapshot_id: str, store: str) -> bool:
    copy = session.get(Copy, (snapshot_id, store))
    if copy is None:
        return False
    copy.status = "deleted"
    count_good_copies(session, snapshot_id)
    return True


def list_snapshots(
    session: Session, plan: str, since: datetime | None, status: str | None
) -> list[SnapshotRecord]:
    query = (
        select(Snapshot)
        .where(Snapshot.plan == plan)
        .options(selectinload(Snapshot.copies), selectinload(Snapshot.artifacts))
        .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
    )
    if since is not None:
        query = query.where(Snapshot.taken_at >= since)
    if status is not None:
        query = query.where(Snapshot.status == status)
    return [to_snapshot_record(snapshot) for snapshot in session.scalars(query)]


def get_snapshot(session: Session, snapshot_id: str) -> SnapshotRecord | None:
    snapshot = session.get(Snapshot, snapshot_id)
    return to_snapshot_record(snapshot) if snapshot is not None else None


def delete_snapshot(session: Session, snapshot_id: str) -> bool:
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None:
        return False
    session.delete(snapshot)
    return True


def rebuild(
    session: Session, plan: str, manifests: Sequence[tuple[str, str, ManifestLike, str]]
) -> list[str]:
    """Record what stores hold: each manifest's snapshot complete, with a complete copy in the
    store it was read from. Returns the snapshot ids the catalog did not know before."""
    added: list[str] = []
    for store, region, manifest, manifest_sha256 in manifests:
        if manifest.plan != plan:
            raise ValueError(
                f"manifest of snapshot {manifest.snapshot_id} belongs to plan "
                f"{manifest.plan!r}, not {plan!r}"
            )
        if rebuild_one(session, store, region, manifest, manifest_sha256):
            added.append(manifest.snapshot_id)
    return added


def rebuild_one(
    session: Session, store: str, region: str, manifest: ManifestLike, manifest_sha256: str
) -> bool:
    """Record one store's manifest; True when the snapshot was new to the catalog."""
    known = session.get(Snapshot, manifest.snapshot_id)
    # the first manifest seen stays the snapshot's reference hash; copies keep their own
    snapshot_sha256 = known.manifest_sha256 if known is not None else None
    record_snapshot(session, manifest, "complete", None, snapshot_sha256 or manifest_sha256)
    session.flush()
    copy = session.get(Copy, (manifest.snapshot_id, store))
    size = copy.bytes if copy is not None and copy.bytes else stored_size(manifest)
    record_copy(
        session,
        manifest.snapshot_id,
        store,
        region,
        "complete",
        error=None,
        size=size,
        manifest_sha256=manifest_sha256,
    )
    session.flush()
    return known is None


def to_snapshot_record(snapshot: Snapshot) -> SnapshotRecord:
    return SnapshotRecord(
        id=snapshot.id,
        plan=snapshot.plan,
        taken_at=snapshot.taken_at,
        finished_at=snapshot.finished_at,
        status=snapshot.status,
        run_id=snapshot.run_id,
        manifest_sha256=snapshot.manifest_sha256,
        size=snapshot.size,
        plaintext_size=snapshot.plaintext_size,
        sources=tuple(snapshot.sources),
        copies=tuple(to_copy_record(copy) for copy in snapshot.copies),
        artifacts=tuple(to_artifact_record(row) for row in snapshot.artifacts),
    )


def to_copy_record(copy: Copy) -> CopyRecord:
    return CopyRecord(
        snapshot_id=copy.snapshot_id,
        store=copy.store,
        region=copy.region,
        status=copy.status,
        error=copy.error,
        bytes=copy.bytes,
        manifest_sha256=copy.manifest_sha256,
        last_verified_at=copy.last_verified_at,
        last_verify_ok=copy.last_verify_ok,
        last_verify_error=copy.last_verify_error,
    )


def to_artifact_record(row: ArtifactRow) -> ArtifactRecord:
    return ArtifactRecord(
        snapshot_id=row.snapshot_id,
        source=row.source,
        type=row.type,
        format=row.format,
        compression=row.compression,
        plaintext_size=row.plaintext_size,
        plaintext_sha256=row.plaintext_sha256,
        fingerprint=row.fingerprint,
        key_names=tuple(row.key_names),
        encrypted_key=row.encrypted_key,
        encrypted_size=row.encrypted_size,
        encrypted_sha256=row.encrypted_sha256,
        raw_key=row.raw_key,
        raw_size=row.raw_size,
        raw_sha256=row.raw_sha256,
    )
