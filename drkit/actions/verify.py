"""`drkit verify`: re-read every copy of a snapshot in every store and prove it intact
(manifest matches its key, object hashes match the manifest, every chunk authenticates and the
plaintext hash matches) without restoring anything."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from drkit.actions.fanout import describe_failure
from drkit.actions.locate import find_snapshots, read_manifest
from drkit.actions.resources import Resources
from drkit.actions.staging import stage_artifact
from drkit.errors import DrkitError, IntegrityError, KeyUnavailableError, SnapshotNotFound
from drkit.manifest import Manifest, manifest_key, sha256_hex
from drkit.plan.schema import ObjectLock
from drkit.plan.schema import S3Store as S3Spec
from drkit.stores.base import Store

log = logging.getLogger(__name__)


@dataclass
class CopyCheck:
    snapshot_id: str
    store: str
    ok: bool
    error: str | None = None
    objects: int = 0
    lock: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "snapshot_id": self.snapshot_id,
            "store": self.store,
            "ok": self.ok,
            "error": self.error,
            "objects": self.objects,
            "lock": self.lock,
        }


@dataclass
class VerifyResult:
    checks: list[CopyCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "copies": [check.to_json() for check in self.checks]}


def verify_copy(
    resources: Resources,
    store_name: str,
    snapshot_id: str,
    directory: Path,
    expected_manifest_sha: str | None = None,
) -> CopyCheck:
    """Check one store's copy of one snapshot end to end."""
    store = next(s for s in resources.stores if s.name == store_name)
    check = CopyCheck(snapshot_id, store_name, ok=False)
    try:
        manifest, data = read_manifest(store, resources.plan.name, snapshot_id)
        if expected_manifest_sha and sha256_hex(data) != expected_manifest_sha:
            raise IntegrityError(
                f"store {store_name}: manifest of {snapshot_id} differs from the one "
                "recorded at backup time"
            )
        for artifact in manifest.artifacts:
            staged = stage_artifact(store, manifest, artifact, resources.keys, directory)
            staged.path.unlink(missing_ok=True)
            check.objects += 1
        check.lock = _check_object_lock(resources, store, manifest)
    except KeyUnavailableError:
        raise
    except DrkitError as error:
        check.error = describe_failure(error)
        log.error(
            "store %s: snapshot %s FAILED verification: %s", store_name, snapshot_id, check.error
        )
        return check
    check.ok = True
    log.info("store %s: snapshot %s verified (%d objects)", store_name, snapshot_id, check.objects)
    return check


# --- S3 Object Lock ------------------------------------------------------------------------

#: slack between the retention drkit asked for and what the server reports (rounding)
LOCK_TOLERANCE = timedelta(minutes=1)


@runtime_checkable
class LockReporting(Protocol):
    """A store that can say how an object is locked (``S3Store.lock_status``)."""

    def lock_status(self, key: str) -> tuple[str | None, datetime | None]: ...


def unwrap_store(store: object) -> object:
    """The store under the wrappers (retry, fault injection): the one holding the objects."""
    while (inner := getattr(store, "inner", None)) is not None:
        store = inner
    return store


def find_lock_problem(
    key: str, mode: str | None, until: datetime | None, lock: ObjectLock, written_after: datetime
) -> str | None:
    """What is wrong with an object's retention, or None. ``written_after`` is a time the
    object was written no earlier than, so its retention must reach ``days`` beyond it."""
    if mode is None or until is None:
        return f"object {key} has no Object Lock retention"
    if mode != lock.mode:
        return f"object {key} is locked in {mode} mode, not {lock.mode}"
    if until < written_after + timedelta(days=lock.days) - LOCK_TOLERANCE:
        return (
            f"object {key} is locked only until {until.isoformat(timespec='seconds')}, "
            f"short of the plan's {lock.days}-day retention"
        )
    return None


def _check_object_lock(resources: Resources, store: Store, manifest: Manifest) -> str | None:
    """For a store with ``object_lock``, read back every object's retention and raise
    IntegrityError naming the first object not locked as the plan says; otherwise describe
    the lock (mode, earliest retain-until). None for stores without Object Lock."""
    spec = resources.plan.store(store.name)
    lock = spec.object_lock if isinstance(spec, S3Spec) else None
    if lock is None:
        return None
    reporter = unwrap_store(store)
    if not isinstance(reporter, LockReporting):
        raise IntegrityError(f"store {store.name}: cannot read Object Lock retention back")
    # artifacts are written after the snapshot is taken, the manifest after it finished
    objects = [
        (stored.key, manifest.taken_at)
        for artifact in manifest.artifacts
        if (stored := artifact.raw if store.wants_plaintext else artifact.encrypted) is not None
    ]
    objects.append((manifest_key(manifest.plan, manifest.snapshot_id), manifest.finished_at))
    retained_until: list[datetime] = []
    for key, written_after in objects:
        mode, until = reporter.lock_status(key)
        problem = find_lock_problem(key, mode, until, lock, written_after)
        if problem is not None or until is None:
            raise IntegrityError(
                f"store {store.name}: {problem}",
                hint="the copy is intact but not immutable as the plan requires; check the "
                "bucket's Object Lock settings and the store's object_lock",
            )
        retained_until.append(until)
    return f"{lock.mode} until {min(retained_until).isoformat(timespec='seconds')}"


def verify(
    resources: Resources,
    *,
    snapshot_id: str | None = None,
    store_name: str | None = None,
    all_snapshots: bool = False,
) -> VerifyResult:
    """Verify the newest snapshot (or a named one, or all) in every store holding it."""
    entries = find_snapshots(resources, store_name=store_name)
    if snapshot_id is not None:
        entries = [entry for entry in entries if entry.snapshot_id == snapshot_id]
        if not entries:
            raise SnapshotNotFound(f"snapshot {snapshot_id} is not known")
    elif not all_snapshots:
        entries = entries[:1]
    if not entries:
        raise SnapshotNotFound(f"no snapshot of {resources.plan.name} to verify")
    result = VerifyResult()
    directory = Path(tempfile.mkdtemp(prefix="drkit-verify-"))
    try:
        for entry in entries:
            # one catalog read per snapshot: the recorded manifest hashes and which copies
            # the catalog knows (a copy found only in a store has no row to update)
            record = (
                resources.catalog.get_snapshot(entry.snapshot_id) if resources.catalog else None
            )
            known = {copy.store: copy for copy in record.copies} if record is not None else {}
            for name in entry.stores:
                if store_name is not None and name != store_name:
                    continue
                copy = known.get(name)
                check = verify_copy(
                    resources,
                    name,
                    entry.snapshot_id,
                    directory,
                    copy.manifest_sha256 if copy is not None else None,
                )
                result.checks.append(check)
                if resources.catalog is not None:
                    _record(resources, check, known=copy is not None)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def _record(resources: Resources, check: CopyCheck, *, known: bool) -> None:
    """Note the verification in the catalog when it knows that copy."""
    assert resources.catalog is not None
    if not known:
        log.info(
            "catalog has no copy of %s in %s; verification not recorded "
            "(drkit catalog rebuild adds it)",
            check.snapshot_id,
            check.store,
        )
        return
    resources.catalog.record_verification(
        check.snapshot_id, check.store, check.ok, error=check.error
    )
