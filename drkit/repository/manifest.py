"""The manifest: the self-describing record a store holds for each snapshot, sealed so a store
can lose or damage it but never read or forge it (DESIGN promise 4).

A sealed manifest (format 2, docs/artifact-format.md) is::

    b"DRKITMF2" | u32 BE header length | clear header JSON | sealed body

The clear header says only what a store already shows in its key names: format, plan,
snapshot id and time. The body is a drkit artifact (``drkit.crypto``) holding the manifest JSON,
its data key wrapped for every key of the plan like any artifact's, and its context is
``drkit:manifest:<sha256 of the header bytes>``: the header is bound to the body, so changing
either fails authentication. Every object the manifest names is bound by size and sha256.

Manifests written by release 0.1.0 are plain JSON (format 1). They are still read, with a
warning that nothing authenticates them, and only where a forgery could not hide: see
``open_manifest``.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drkit.crypto import KeyEncryptionKey, decrypt_chunks, encrypt_chunks
from drkit.errors import IntegrityError
from drkit.repository.layout import (
    SEALED_EXTENSION,
    agrees_with_id,
    snapshot_prefix,
)

SEALED_FORMAT = 2
LEGACY_FORMAT = 1
SEALED_MAGIC = b"DRKITMF2"
HEADER_PREFIX = struct.Struct(">I")
MAX_HEADER_SIZE = 4096
HEADER_FIELDS = frozenset({"format", "plan", "snapshot_id", "taken_at"})
#: a legacy (unauthenticated) manifest dated later than this is refused as forged
FUTURE_TOLERANCE = timedelta(minutes=5)
#: extensions of raw objects (pgdump, sql, sqlite, tar): no dots, so no other source's name
RAW_EXTENSION = re.compile(r"[a-z0-9]{1,16}")


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
    #: what only the sealed manifest holds (role password hashes), never the catalog
    private: dict[str, Any] = Field(default_factory=dict)
    #: the sealed object, in every store that does not encrypt on its own
    encrypted: StoredObject | None = None
    #: the raw object, in stores that encrypt on their own (restic)
    raw: StoredObject | None = None
    key_names: list[str] = Field(
        default_factory=list, description="keys the data key is wrapped for"
    )
    duration_seconds: float = 0.0

    def stored_object(self, wants_plaintext: bool) -> StoredObject | None:
        """The object a store holds for this artifact: raw for stores that encrypt on their
        own (restic), sealed for all others. The one place that choice is made."""
        return self.raw if wants_plaintext else self.encrypted


class Manifest(ManifestModel):
    format: int = SEALED_FORMAT
    plan: str
    snapshot_id: str
    taken_at: datetime
    finished_at: datetime
    drkit_version: str
    sources: list[str]
    artifacts: list[Artifact]
    plan_sha256: str = Field(description="hash of the normalized plan, secrets as references only")

    def artifact(self, source: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.source == source:
                return artifact
        raise IntegrityError(f"the manifest of {self.snapshot_id} lists no artifact {source!r}")

    def stored_size(self, wants_plaintext: bool) -> int:
        """Bytes a store of that kind holds for the snapshot's artifacts."""
        objects = (artifact.stored_object(wants_plaintext) for artifact in self.artifacts)
        return sum(stored.size for stored in objects if stored is not None)

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()


@dataclass(frozen=True)
class OpenedManifest:
    """A manifest read from a store and checked: ``authenticated`` is False only for the
    legacy plain-JSON format. ``sha256`` is the hash of the bytes as the store holds them."""

    manifest: Manifest
    sha256: str
    authenticated: bool


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- sealing -----------------------------------------------------------------------------------


def encode_header(manifest: Manifest) -> bytes:
    document = {
        "format": SEALED_FORMAT,
        "plan": manifest.plan,
        "snapshot_id": manifest.snapshot_id,
        "taken_at": manifest.taken_at.astimezone(UTC).isoformat(),
    }
    body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return SEALED_MAGIC + HEADER_PREFIX.pack(len(body)) + body


def manifest_context(header: bytes) -> str:
    """The sealed body's context: binds the clear header (every byte of it) to the body."""
    return f"drkit:manifest:{sha256_hex(header)}"


def seal_manifest(manifest: Manifest, keys: Sequence[KeyEncryptionKey]) -> bytes:
    """The bytes to store: clear header, then the body sealed for every key in ``keys``."""
    if manifest.format != SEALED_FORMAT:
        raise ValueError("only the current manifest format is written")
    header = encode_header(manifest)
    body = b"".join(encrypt_chunks([manifest.to_json_bytes()], keys, manifest_context(header)))
    return header + body


# --- opening -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestHeader:
    """The clear part of a sealed manifest (readable without keys)."""

    format: int
    plan: str
    snapshot_id: str
    taken_at: datetime
    size: int


def is_sealed(data: bytes) -> bool:
    return data[: len(SEALED_MAGIC)] == SEALED_MAGIC


def read_header(data: bytes) -> ManifestHeader:
    """Parse a sealed manifest's clear header; IntegrityError when it is not one."""
    start = len(SEALED_MAGIC) + HEADER_PREFIX.size
    if not is_sealed(data) or len(data) < start:
        raise IntegrityError("manifest is damaged or not a drkit manifest")
    (length,) = HEADER_PREFIX.unpack_from(data, len(SEALED_MAGIC))
    if length > MAX_HEADER_SIZE or len(data) < start + length:
        raise IntegrityError("manifest header is damaged (impossible length)")
    try:
        document = json.loads(data[start : start + length].decode("utf-8"))
        assert isinstance(document, dict) and set(document) == HEADER_FIELDS
        header = ManifestHeader(
            int(document["format"]),
            str(document["plan"]),
            str(document["snapshot_id"]),
            datetime.fromisoformat(document["taken_at"]),
            start + length,
        )
    except (AssertionError, ValueError, TypeError, UnicodeDecodeError):
        raise IntegrityError("manifest header is damaged") from None
    if header.format != SEALED_FORMAT:
        raise IntegrityError(
            f"manifest format {header.format} is not one this drkit reads",
            hint="a newer drkit may have written it; upgrade drkit",
        )
    return header


def open_manifest(
    data: bytes,
    keys: Sequence[KeyEncryptionKey],
    *,
    plan: str,
    snapshot_id: str,
    now: datetime | None = None,
) -> OpenedManifest:
    """Authenticate, decrypt and check the manifest a store holds at ``snapshot_id``.

    Raises IntegrityError when it is damaged, forged, another snapshot's or plan's, or names
    objects outside its snapshot; KeyUnavailableError when no key of ``keys`` opens it (a wrong
    key, or a body sealed by someone else). Legacy plain-JSON manifests open with
    ``authenticated=False`` and only when dated in the past.
    """
    if is_sealed(data):
        manifest = _open_sealed(data, keys, plan, snapshot_id)
        authenticated = True
    elif data.lstrip()[:1] == b"{":
        manifest = _parse_legacy(data, now or datetime.now(UTC))
        authenticated = False
    else:
        raise IntegrityError("manifest is damaged or not a drkit manifest")
    check_identity(manifest, plan, snapshot_id)
    check_objects(manifest)
    return OpenedManifest(manifest, sha256_hex(data), authenticated)


def _open_sealed(
    data: bytes, keys: Sequence[KeyEncryptionKey], plan: str, snapshot_id: str
) -> Manifest:
    header = read_header(data)
    if header.plan != plan:
        raise IntegrityError(f"manifest belongs to plan {header.plan!r}, not {plan!r}")
    if header.snapshot_id != snapshot_id:
        raise IntegrityError(
            f"manifest at snapshot {snapshot_id} describes snapshot {header.snapshot_id}"
        )
    context = manifest_context(data[: header.size])
    body = b"".join(decrypt_chunks([data[header.size :]], keys, context))
    manifest = _parse_body(body)
    if (manifest.plan, manifest.snapshot_id, manifest.taken_at) != (
        header.plan,
        header.snapshot_id,
        header.taken_at,
    ):
        raise IntegrityError("manifest body disagrees with its header")
    if manifest.format != SEALED_FORMAT:
        raise IntegrityError(f"sealed manifest claims format {manifest.format}")
    return manifest


def _parse_body(body: bytes) -> Manifest:
    try:
        return Manifest.model_validate_json(body)
    except ValidationError as error:
        first = str(error).splitlines()[0]
        # authenticated, so written by a drkit: a newer one, with fields this one lacks
        raise IntegrityError(
            f"manifest cannot be read: {first}", hint="a newer drkit may have written it"
        ) from None


def _parse_legacy(data: bytes, now: datetime) -> Manifest:
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as error:
        first = str(error).splitlines()[0]
        raise IntegrityError(f"manifest is damaged or not a drkit manifest: {first}") from None
    if manifest.format != LEGACY_FORMAT:
        raise IntegrityError(f"plain-JSON manifest claims format {manifest.format}: forged")
    if manifest.taken_at > now + FUTURE_TOLERANCE:
        raise IntegrityError(
            f"unauthenticated manifest dated in the future ({manifest.taken_at.isoformat()})"
        )
    return manifest


def check_identity(manifest: Manifest, plan: str, snapshot_id: str) -> None:
    """The manifest is the one its key says, and its time agrees with its id."""
    if manifest.plan != plan:
        raise IntegrityError(f"manifest belongs to plan {manifest.plan!r}, not {plan!r}")
    if manifest.snapshot_id != snapshot_id:
        raise IntegrityError(
            f"manifest at snapshot {snapshot_id} describes snapshot {manifest.snapshot_id}"
        )
    if not agrees_with_id(snapshot_id, manifest.taken_at):
        raise IntegrityError(
            f"manifest of {snapshot_id} says it was taken at {manifest.taken_at.isoformat()}, "
            "which disagrees with its id"
        )
    if manifest.sources != [artifact.source for artifact in manifest.artifacts]:
        raise IntegrityError(f"manifest of {snapshot_id} lists sources it has no artifact for")


def check_objects(manifest: Manifest) -> None:
    """Every object the manifest names sits where this snapshot's objects sit (so a manifest
    cannot point at another snapshot's objects, whose content it could not otherwise bind)."""
    prefix = snapshot_prefix(manifest.plan, manifest.snapshot_id)
    for artifact in manifest.artifacts:
        sealed_name = f"{prefix}{artifact.source}.{SEALED_EXTENSION}"
        if artifact.encrypted is not None and artifact.encrypted.key != sealed_name:
            raise IntegrityError(
                f"manifest of {manifest.snapshot_id} points {artifact.source} at "
                f"{artifact.encrypted.key}, outside its snapshot"
            )
        raw = artifact.raw
        extension = raw.key.removeprefix(f"{prefix}{artifact.source}.") if raw else ""
        if raw is not None and (
            not RAW_EXTENSION.fullmatch(extension) or extension == SEALED_EXTENSION
        ):
            raise IntegrityError(
                f"manifest of {manifest.snapshot_id} points {artifact.source} at {raw.key}, "
                "outside its snapshot"
            )
