"""`drkit info`: one snapshot's contents (sources, formats, sizes, tables and files, keys),
the stores that hold it with their verification state, and the drills of it.

Read from the catalog, or, with a store named (or when the catalog does not know the
snapshot), from a store's own sealed manifest, opened and authenticated through the
repository layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from drkit.actions.resources import Resources
from drkit.actions.selection import locate_snapshot
from drkit.catalog.records import ArtifactFields, CopyRecord, DrillRecord, SnapshotRecord
from drkit.repository import OpenedManifest, SnapshotCopies, SnapshotEntry

if TYPE_CHECKING:
    from drkit.catalog import Catalog


@dataclass(frozen=True)
class ArtifactContents:
    """One source's capture within the snapshot."""

    source: str
    type: str
    format: str
    compression: str
    plaintext_size: int
    plaintext_sha256: str
    #: bytes of the sealed object (filesystem, S3 stores) and of the raw one (restic)
    encrypted_size: int | None
    raw_size: int | None
    keys: tuple[str, ...]
    fingerprint: dict[str, Any]
    tool_versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "type": self.type,
            "format": self.format,
            "compression": self.compression,
            "plaintext_bytes": self.plaintext_size,
            "plaintext_sha256": self.plaintext_sha256,
            "encrypted_bytes": self.encrypted_size,
            "raw_bytes": self.raw_size,
            "keys": list(self.keys),
            "tool_versions": self.tool_versions,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class SnapshotContents:
    """What a snapshot holds, as its manifest (or the catalog's record of it) says.

    ``authenticated`` is None when read from the catalog (no manifest was opened),
    ``drkit_version`` None when the catalog does not record it."""

    plan: str
    snapshot_id: str
    taken_at: datetime
    finished_at: datetime | None
    sources: tuple[str, ...]
    artifacts: tuple[ArtifactContents, ...]
    #: "catalog", or "store NAME" for a manifest read from that store
    origin: str
    authenticated: bool | None
    drkit_version: str | None = None
    manifest_sha256: str | None = None

    @property
    def plaintext_size(self) -> int:
        return sum(artifact.plaintext_size for artifact in self.artifacts)

    def artifact(self, source: str) -> ArtifactContents | None:
        return next((a for a in self.artifacts if a.source == source), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "snapshot_id": self.snapshot_id,
            "taken_at": self.taken_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "origin": self.origin,
            "authenticated": self.authenticated,
            "drkit_version": self.drkit_version,
            "manifest_sha256": self.manifest_sha256,
            "plaintext_bytes": self.plaintext_size,
            "sources": list(self.sources),
            "artifacts": [artifact.to_json() for artifact in self.artifacts],
        }


def source_order(sources: tuple[str, ...], source: str) -> int:
    """Where a source stands in the plan's order (as its manifest lists them)."""
    return sources.index(source) if source in sources else len(sources)


def artifact_contents(
    artifact: ArtifactFields,
    keys: Sequence[str],
    sizes: tuple[int | None, int | None],
    tool_versions: dict[str, str] | None = None,
) -> ArtifactContents:
    """``sizes``: of the sealed object and of the raw one."""
    return ArtifactContents(
        source=artifact.source,
        type=artifact.type,
        format=artifact.format,
        compression=artifact.compression,
        plaintext_size=artifact.plaintext_size,
        plaintext_sha256=artifact.plaintext_sha256,
        encrypted_size=sizes[0],
        raw_size=sizes[1],
        keys=tuple(keys),
        fingerprint=dict(artifact.fingerprint),
        tool_versions=dict(tool_versions or {}),
    )


def contents_from_record(record: SnapshotRecord) -> SnapshotContents:
    ordered = sorted(record.artifacts, key=lambda a: source_order(record.sources, a.source))
    artifacts = tuple(
        artifact_contents(a, a.key_names, (a.encrypted_size, a.raw_size)) for a in ordered
    )
    return SnapshotContents(
        plan=record.plan,
        snapshot_id=record.id,
        taken_at=record.taken_at,
        finished_at=record.finished_at,
        sources=record.sources,
        artifacts=artifacts,
        origin="catalog",
        authenticated=None,
        manifest_sha256=record.manifest_sha256,
    )


def contents_from_manifest(opened: OpenedManifest, store: str) -> SnapshotContents:
    manifest = opened.manifest
    artifacts = tuple(
        artifact_contents(
            artifact,
            artifact.key_names,
            (
                artifact.encrypted.size if artifact.encrypted else None,
                artifact.raw.size if artifact.raw else None,
            ),
            artifact.tool_versions,
        )
        for artifact in manifest.artifacts
    )
    return SnapshotContents(
        plan=manifest.plan,
        snapshot_id=manifest.snapshot_id,
        taken_at=manifest.taken_at,
        finished_at=manifest.finished_at,
        sources=tuple(manifest.sources),
        artifacts=artifacts,
        origin=f"store {store}",
        authenticated=opened.authenticated,
        drkit_version=manifest.drkit_version,
        manifest_sha256=opened.sha256,
    )


def read_contents(
    resources: Resources, entry: SnapshotEntry, *, store_name: str | None = None
) -> SnapshotContents:
    """The snapshot's contents: the named store's manifest, the catalog's record, or (a
    snapshot the catalog does not know) the first listing store whose manifest proves it."""
    catalog = resources.catalog
    record = catalog.get_snapshot(entry.snapshot_id) if catalog is not None else None
    if store_name is None and entry.origin == "catalog" and record is not None:
        return contents_from_record(record)
    stores = [store_name] if store_name is not None else entry.stores
    expected = {}
    if record is not None:
        expected = {c.store: c.manifest_sha256 or record.manifest_sha256 for c in record.copies}
    copies = SnapshotCopies(resources.repository, entry.snapshot_id, stores, expected)
    for name in stores:
        opened = copies.prove(name)
        if opened is not None:
            return contents_from_manifest(opened, name)
    raise copies.no_copy_error(f"no store proves snapshot {entry.snapshot_id}")


@dataclass(frozen=True)
class CopyState:
    """The snapshot's copy in one store: its state, and its last verification."""

    store: str
    status: str
    bytes: int | None = None
    verified_at: datetime | None = None
    verify_ok: bool | None = None
    verify_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "status": self.status,
            "bytes": self.bytes,
            "verified_at": self.verified_at.isoformat() if self.verified_at else None,
            "verify_ok": self.verify_ok,
            "verify_error": self.verify_error,
        }


def copy_state(copy: CopyRecord) -> CopyState:
    return CopyState(
        copy.store,
        copy.status,
        copy.bytes,
        copy.last_verified_at,
        copy.last_verify_ok,
        copy.last_verify_error,
    )


def drills_of(catalog: Catalog | None, plan: str, snapshot_id: str) -> list[DrillRecord]:
    """The drills of one snapshot, newest first (none without a catalog)."""
    if catalog is None:
        return []
    return [drill for drill in catalog.list_drills(plan) if drill.snapshot_id == snapshot_id]


@dataclass
class SnapshotInfo:
    """Everything ``drkit info`` shows of one snapshot."""

    contents: SnapshotContents
    copies: list[CopyState]
    drills: list[DrillRecord]
    #: store -> why its copy did not prove the snapshot
    problems: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.contents.to_json(),
            "stores": [copy.to_json() for copy in self.copies],
            "problems": self.problems,
            "drills": [drill_to_json(drill) for drill in self.drills],
        }


def drill_to_json(drill: DrillRecord) -> dict[str, Any]:
    return {
        "store": drill.store,
        "started_at": drill.started_at.isoformat(),
        "finished_at": drill.finished_at.isoformat(),
        "outcome": drill.outcome,
        "rto_seconds": drill.rto_seconds,
        "rpo_seconds": drill.rpo_seconds,
        "error": drill.error,
    }


def inspect_snapshot(
    resources: Resources, name: str, *, store_name: str | None = None
) -> SnapshotInfo:
    """The snapshot ``name`` names (an id, a prefix, ``latest``, ``latest~N``)."""
    entry = locate_snapshot(resources, name, store_name=store_name)
    contents = read_contents(resources, entry, store_name=store_name)
    catalog = resources.catalog
    record = catalog.get_snapshot(entry.snapshot_id) if catalog is not None else None
    if record is not None:
        copies = [copy_state(copy) for copy in record.copies]
    else:
        # only the store whose manifest was opened and authenticated is known complete
        proven = contents.origin.removeprefix("store ")
        copies = [
            CopyState(store, "complete" if store == proven else "listed") for store in entry.stores
        ]
    return SnapshotInfo(
        contents,
        copies,
        drills_of(catalog, resources.plan.name, entry.snapshot_id),
        dict(entry.problems),
    )
