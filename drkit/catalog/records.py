"""What the catalog hands out: frozen records, never ORM objects, so callers cannot reach
back into a session or change the catalog by accident."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, get_args


class StoredObjectLike(Protocol):
    """An object a store holds (``drkit.repository.manifest.StoredObject``)."""

    @property
    def key(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


class ArtifactFields(Protocol):
    """What a manifest's artifact and the catalog's record of it (``ArtifactRecord``) share."""

    @property
    def source(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def compression(self) -> str: ...
    @property
    def plaintext_size(self) -> int: ...
    @property
    def plaintext_sha256(self) -> str: ...
    @property
    def fingerprint(self) -> dict[str, Any]: ...


class ArtifactLike(ArtifactFields, Protocol):
    """What the catalog reads of one artifact of a manifest."""

    @property
    def key_names(self) -> list[str]: ...
    @property
    def encrypted(self) -> StoredObjectLike | None: ...
    @property
    def raw(self) -> StoredObjectLike | None: ...


class ManifestLike(Protocol):
    """What the catalog records of a snapshot's manifest (``drkit.repository.Manifest``);
    the catalog does not depend on the repository layer above it."""

    @property
    def plan(self) -> str: ...
    @property
    def snapshot_id(self) -> str: ...
    @property
    def taken_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime: ...
    @property
    def sources(self) -> list[str]: ...
    @property
    def artifacts(self) -> Sequence[ArtifactLike]: ...


RunKind = Literal["backup", "restore", "drill", "verify", "prune", "rebuild"]
RunOutcome = Literal[
    "running", "ok", "skipped", "degraded", "breached", "locked", "interrupted", "failed"
]
#: drills end ok, failed, breached or interrupted (release 0.1.0 wrote passed and error,
#: which migration 0002 turned into ok and failed)
SnapshotStatus = Literal["pending", "complete", "incomplete", "failed"]
CopyStatus = Literal["uploading", "complete", "failed", "deleted"]
DrillOutcome = Literal["ok", "failed", "breached", "interrupted"]


def check_choice(kind: Any, value: str, what: str) -> None:
    """Refuse a value outside a Literal type: the catalog never stores a word it cannot read."""
    choices = get_args(kind)
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, not {value!r}")


@dataclass(frozen=True)
class RunRecord:
    """One drkit run (backup, restore, drill, ...) and how it ended."""

    id: int
    plan: str
    kind: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error: str | None
    summary: dict[str, Any] | None
    host: str
    pid: int


@dataclass(frozen=True)
class ArtifactRecord:
    """One source's capture within a snapshot, as its manifest describes it."""

    snapshot_id: str
    source: str
    type: str
    format: str
    compression: str
    plaintext_size: int
    plaintext_sha256: str
    fingerprint: dict[str, Any]
    key_names: tuple[str, ...]
    encrypted_key: str | None
    encrypted_size: int | None
    encrypted_sha256: str | None
    raw_key: str | None
    raw_size: int | None
    raw_sha256: str | None


@dataclass(frozen=True)
class CopyRecord:
    """A snapshot's artifact set in one store, with its upload and verification state."""

    snapshot_id: str
    store: str
    region: str | None
    status: str
    error: str | None
    bytes: int
    manifest_sha256: str | None
    last_verified_at: datetime | None
    last_verify_ok: bool | None
    last_verify_error: str | None


@dataclass(frozen=True)
class SnapshotRecord:
    """One recovery point of a plan, with every store copy and every artifact."""

    id: str
    plan: str
    taken_at: datetime
    finished_at: datetime | None
    status: str
    run_id: int | None
    manifest_sha256: str | None
    size: int
    plaintext_size: int
    sources: tuple[str, ...]
    copies: tuple[CopyRecord, ...] = ()
    artifacts: tuple[ArtifactRecord, ...] = ()

    def complete_stores(self) -> list[str]:
        """Stores whose copy finished uploading (their manifest is written there)."""
        return [copy.store for copy in self.copies if copy.status == "complete"]

    def healthy_stores(self) -> list[str]:
        """Complete stores whose last verification, if any, passed."""
        return [
            copy.store
            for copy in self.copies
            if copy.status == "complete" and copy.last_verify_ok is not False
        ]

    def copy_in(self, store: str) -> CopyRecord | None:
        """This snapshot's copy in ``store``, if the catalog knows one."""
        return next((copy for copy in self.copies if copy.store == store), None)


@dataclass(frozen=True)
class DrillCheck:
    """One check a drill ran against the restored data (``passed`` None: a note, nothing
    was checked)."""

    name: str
    passed: bool | None
    measured: float | int | str | None = None
    detail: str = ""


@dataclass(frozen=True)
class CopyInput:
    """A store's copy of a snapshot as a backup ends (``Catalog.record_backup``)."""

    store: str
    region: str | None
    status: str
    error: str | None = None
    bytes: int = 0
    manifest_sha256: str | None = None


@dataclass(frozen=True)
class DrillInput:
    """A finished drill to record; the catalog assigns its id."""

    plan: str
    snapshot_id: str
    store: str
    started_at: datetime
    finished_at: datetime
    outcome: str
    run_id: int | None = None
    sandbox_kinds: tuple[str, ...] = ()
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    #: seconds per phase: provision, fetch, decrypt, load, checks
    phases: dict[str, float] = field(default_factory=dict)
    checks: tuple[DrillCheck, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class DrillRecord(DrillInput):
    """A recorded drill: its measured RTO and RPO, phases and checks."""

    id: int = 0


@dataclass(frozen=True)
class LockInfo:
    """A plan's lock lease as held right now; ``took_over_from`` names an expired holder."""

    plan: str
    owner: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    took_over_from: str | None = None
