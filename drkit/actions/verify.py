"""`drkit verify`: re-read every copy of a snapshot in every store and prove it intact (the
store's own manifest authenticates and matches the catalog's record, object hashes match the
manifest, every chunk authenticates and the plaintext hash matches) without restoring
anything; and name stores that lack snapshots other stores hold (rolled back, or behind)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from drkit.actions.resources import Resources
from drkit.actions.tracking import tracked_run
from drkit.errors import (
    DrkitError,
    IntegrityError,
    KeyUnavailableError,
    SnapshotNotFound,
    describe_failure,
)
from drkit.outcome import Outcome
from drkit.plan.schema import ObjectLock
from drkit.plan.schema import S3Store as S3Spec
from drkit.repository import (
    Manifest,
    SnapshotEntry,
    find_lagging_stores,
    find_snapshots,
    list_store_snapshots,
)
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
    authenticated: bool = True

    def to_json(self) -> dict[str, object]:
        return {
            "snapshot_id": self.snapshot_id,
            "store": self.store,
            "ok": self.ok,
            "error": self.error,
            "objects": self.objects,
            "lock": self.lock,
            "manifest_authenticated": self.authenticated,
        }


@dataclass
class VerifyResult:
    checks: list[CopyCheck] = field(default_factory=list)
    #: stores that lost snapshots the catalog recorded complete there (rolled back): failures
    lagging: list[str] = field(default_factory=list)
    #: stores lacking newer snapshots another holds, with no record that they ever held them
    #: (a backup to them failed, or the catalog is gone): worth a look, not a failure
    behind: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks) and not self.lagging

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "copies": [check.to_json() for check in self.checks],
            "lagging": self.lagging,
            "behind": self.behind,
        }


def verify_copy(
    resources: Resources,
    store_name: str,
    snapshot_id: str,
    directory: Path,
    expected_manifest_sha: str | None = None,
) -> CopyCheck:
    """Check one store's copy of one snapshot end to end."""
    repository = resources.repository
    store = repository.store(store_name)
    check = CopyCheck(snapshot_id, store_name, ok=False)
    try:
        opened = repository.open_manifest(store, snapshot_id, expected_sha256=expected_manifest_sha)
        check.authenticated = opened.authenticated
        for artifact in opened.manifest.artifacts:
            staged = repository.stage_artifact(store, opened.manifest, artifact, directory)
            staged.path.unlink(missing_ok=True)
            check.objects += 1
        check.lock = _check_object_lock(resources, store, opened.manifest)
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
    reader = store.abilities().lock_status
    if reader is None:
        raise IntegrityError(f"store {store.name}: cannot read Object Lock retention back")
    objects = resources.repository.object_keys(store, manifest)
    retained_until: list[datetime] = []
    for key, written_after in objects:
        mode, until = reader.lock_status(key)
        problem = find_lock_problem(key, mode, until, lock, written_after)
        if problem is not None or until is None:
            raise IntegrityError(
                f"store {store.name}: {problem}",
                hint="the copy is intact but not immutable as the plan requires; check the "
                "bucket's Object Lock settings and the store's object_lock",
            )
        retained_until.append(until)
    return f"{lock.mode} until {min(retained_until).isoformat(timespec='seconds')}"


def _select(
    resources: Resources, snapshot_id: str | None, store_name: str | None, all_snapshots: bool
) -> list[SnapshotEntry]:
    entries = find_snapshots(
        resources.repository, resources.catalog, store_name=store_name, snapshot_id=snapshot_id
    )
    if snapshot_id is not None:
        entries = [entry for entry in entries if entry.snapshot_id == snapshot_id]
        if not entries:
            raise SnapshotNotFound(f"snapshot {snapshot_id} is not known")
    elif not all_snapshots:
        entries = entries[:1]
    if not entries:
        raise SnapshotNotFound(f"no snapshot of {resources.plan.name} to verify")
    return entries


def verify(
    resources: Resources,
    *,
    snapshot_id: str | None = None,
    store_name: str | None = None,
    all_snapshots: bool = False,
) -> VerifyResult:
    """Verify the newest snapshot (or a named one, or all) in every store holding it, and
    compare what the stores hold. Recorded as a catalog run (``verify``: ok, or failed
    naming what failed), so ``run --due`` knows it ran and ``status`` sees a damaged copy."""
    if store_name is not None:
        resources.repository.store(store_name)  # a mistyped name is a usage error, unrecorded
    with tracked_run(resources, "verify") as tracker:
        result = verify_copies(
            resources, snapshot_id=snapshot_id, store_name=store_name, all_snapshots=all_snapshots
        )
        failures = [f"{c.store}: {c.error}" for c in result.checks if not c.ok]
        tracker.outcome = Outcome.OK if result.ok else Outcome.FAILED
        tracker.error = "; ".join(failures + result.lagging) or None
        tracker.summary = result.to_json()
    return result


def verify_copies(
    resources: Resources,
    *,
    snapshot_id: str | None,
    store_name: str | None,
    all_snapshots: bool,
) -> VerifyResult:
    entries = _select(resources, snapshot_id, store_name, all_snapshots)
    result = VerifyResult()
    directory = Path(tempfile.mkdtemp(prefix="drkit-verify-"))
    directory.chmod(0o700)
    try:
        for entry in entries:
            recorded = _recorded_hashes(resources, entry)
            for name in entry.stores:
                if store_name is not None and name != store_name:
                    continue
                check = verify_copy(
                    resources, name, entry.snapshot_id, directory, recorded.get(name)
                )
                result.checks.append(check)
                if resources.catalog is not None:
                    _record(resources, check, known=name in recorded)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    compare_stores(resources, result, store_name)
    return result


def compare_stores(resources: Resources, result: VerifyResult, store_name: str | None) -> None:
    """Name stores lacking newer snapshots another store holds: a failure when the catalog
    recorded a complete copy there (the store lost it: rolled back), a warning otherwise."""
    listings, _ = list_store_snapshots(resources.repository, [s.name for s in resources.stores])
    for lag in find_lagging_stores(listings):
        if store_name is not None and lag.store != store_name:
            continue
        if any(
            _recorded_complete(resources, snapshot_id, lag.store) for snapshot_id in lag.missing
        ):
            line = f"{lag.describe()}, although the catalog recorded a complete copy there"
            result.lagging.append(line)
            log.error("%s", line)
        else:
            result.behind.append(lag.describe())
            log.warning("%s", lag.describe())


def _recorded_complete(resources: Resources, snapshot_id: str, store: str) -> bool:
    record = resources.catalog.get_snapshot(snapshot_id) if resources.catalog else None
    copy = record.copy_in(store) if record is not None else None
    return copy is not None and copy.status == "complete"


def _recorded_hashes(resources: Resources, entry: SnapshotEntry) -> dict[str, str | None]:
    """Store -> manifest hash the catalog recorded for its copy (one catalog read per
    snapshot; a copy found only in a store has no entry)."""
    if entry.origin == "catalog" or resources.catalog is None:
        return dict(entry.manifest_sha256)
    record = resources.catalog.get_snapshot(entry.snapshot_id)
    if record is None:
        return {}
    return {copy.store: copy.manifest_sha256 or record.manifest_sha256 for copy in record.copies}


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
