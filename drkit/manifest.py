"""Snapshot ids, the key layout inside a store, and the manifest: the self-describing record a
store holds for each snapshot. A store holds a snapshot only once its manifest is there
(the commit point); the catalog can be rebuilt from the manifests of any single store.

Layout inside every store::

    <plan>/snapshots/<snapshot-id>/<source>.drkit        encrypted artifact (drkit format)
    <plan>/snapshots/<snapshot-id>/<source>.<ext>        raw artifact (restic stores only)
    <plan>/snapshots/<snapshot-id>/manifest.json         written last
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from drkit.errors import IntegrityError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
SNAPSHOT_ID_PATTERN = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$")


def new_snapshot_id(taken_at: datetime) -> str:
    """Time-sortable and readable: ``20261127T153000.042Z-3fa2c1`` (UTC, milliseconds, so
    two snapshots of the same second still sort in the order they were taken)."""
    moment = taken_at.astimezone(UTC)
    return (
        moment.strftime("%Y%m%dT%H%M%S")
        + f".{moment.microsecond // 1000:03d}Z-"
        + secrets.token_hex(3)
    )


def snapshot_time(snapshot_id: str) -> datetime | None:
    """When a snapshot was taken, read from its id (None for an id not made by drkit)."""
    try:
        return datetime.strptime(snapshot_id[:19], "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return None


def snapshot_prefix(plan: str, snapshot_id: str | None = None) -> str:
    base = f"{plan}/snapshots/"
    return base if snapshot_id is None else f"{base}{snapshot_id}/"


def manifest_key(plan: str, snapshot_id: str) -> str:
    return f"{snapshot_prefix(plan, snapshot_id)}{MANIFEST_NAME}"


def artifact_key(plan: str, snapshot_id: str, source: str, extension: str) -> str:
    return f"{snapshot_prefix(plan, snapshot_id)}{source}.{extension}"


def snapshot_ids_from_keys(plan: str, keys: list[str]) -> list[str]:
    """Snapshot ids whose manifest is among ``keys`` (committed snapshots only), oldest first."""
    prefix = snapshot_prefix(plan)
    found = []
    for key in keys:
        if key.startswith(prefix) and key.endswith("/" + MANIFEST_NAME):
            candidate = key[len(prefix) : -len(MANIFEST_NAME) - 1]
            if SNAPSHOT_ID_PATTERN.match(candidate):
                found.append(candidate)
    return sorted(found)


class ManifestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoredObject(ManifestModel):
    """One object as a store holds it."""

    key: str
    size: int
    sha256: str


class Artifact(ManifestModel):
    """One source's capture within a snapshot."""

    source: str
    type: str
    format: str = Field(description="dump format, e.g. pg_dump-custom, mysqldump-sql, sqlite, tar")
    compression: Literal["zstd", "none"]
    plaintext_size: int
    plaintext_sha256: str
    fingerprint: dict[str, Any]
    tool_versions: dict[str, str] = Field(default_factory=dict)
    #: the drkit-encrypted object, in every store that does not want plaintext
    encrypted: StoredObject | None = None
    #: the raw object, in stores that encrypt on their own (restic)
    raw: StoredObject | None = None
    key_names: list[str] = Field(
        default_factory=list, description="keys the data key is wrapped for"
    )
    duration_seconds: float = 0.0


class Manifest(ManifestModel):
    format: int = MANIFEST_FORMAT
    plan: str
    snapshot_id: str
    taken_at: datetime
    finished_at: datetime
    drkit_version: str
    sources: list[str]
    artifacts: list[Artifact]
    plan_sha256: str = Field(description="hash of the normalized plan, secrets as references only")

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(
        cls, data: bytes, *, expect_plan: str, expect_snapshot: str | None = None
    ) -> Manifest:
        """Parse a manifest read from a store, refusing one that is not what its key says
        (another snapshot's manifest copied over this one, or a damaged file)."""
        try:
            manifest = cls.model_validate_json(data)
        except ValueError as error:
            first = str(error).splitlines()[0]
            raise IntegrityError(f"manifest is damaged or not a drkit manifest: {first}") from None
        if manifest.plan != expect_plan:
            raise IntegrityError(f"manifest belongs to plan {manifest.plan!r}, not {expect_plan!r}")
        if expect_snapshot is not None and manifest.snapshot_id != expect_snapshot:
            raise IntegrityError(
                f"manifest at snapshot {expect_snapshot} describes snapshot {manifest.snapshot_id}"
            )
        return manifest

    def artifact(self, source: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.source == source:
                return artifact
        raise KeyError(source)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def artifact_context(plan: str, snapshot_id: str, source: str) -> str:
    """Bound into every encrypted artifact's header: an artifact moved to another snapshot or
    source (splicing) fails authentication."""
    return f"drkit:{plan}:{snapshot_id}:{source}"
