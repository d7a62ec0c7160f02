"""`drkit backup`: one recovery point of every source of a plan, shipped to all its stores at once.

Order of events (the commit protocol, DESIGN promise 3):
1. each source is captured once; its stream is compressed and encrypted once and fanned out to
   every store concurrently (restic stores get the raw stream and encrypt it themselves);
2. a source that fails aborts the whole snapshot: uploads are aborted, nothing is committed;
3. only then is the manifest written to each store whose artifacts all arrived: that write is
   the commit point, per store;
4. the copy policy decides the outcome (ok / degraded / failed) and the catalog records it.
A process killed anywhere before step 3 leaves no manifest, so nothing looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drkit import __version__
from drkit.actions.fanout import Upload, describe_failure, finish_all
from drkit.actions.outcome import Outcome, StoreResult, judge_copies
from drkit.actions.resources import Resources
from drkit.compression import compress_chunks
from drkit.crypto import encrypt_chunks
from drkit.errors import DrkitError, StoreFull, StoreUnavailable
from drkit.manifest import (
    Artifact,
    Manifest,
    StoredObject,
    artifact_context,
    artifact_key,
    manifest_key,
    new_snapshot_id,
    sha256_hex,
)
from drkit.plan.schema import Plan
from drkit.sources import make_source
from drkit.sources.base import Capture

log = logging.getLogger(__name__)
ENCRYPTED_EXTENSION = "drkit"

ProgressCallback = Callable[[str, int], None]  # (source name, plaintext bytes read so far)


@dataclass
class BackupResult:
    plan: str
    snapshot_id: str
    taken_at: datetime
    outcome: Outcome
    stores: list[StoreResult]
    manifest: Manifest | None
    plaintext_bytes: int = 0
    stored_bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    run_id: int | None = None
    sources: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "plan": self.plan,
            "snapshot_id": self.snapshot_id,
            "taken_at": self.taken_at.isoformat(),
            "outcome": self.outcome.value,
            "plaintext_bytes": self.plaintext_bytes,
            "stored_bytes": self.stored_bytes,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "stores": [store.to_json() for store in self.stores],
            "sources_seconds": {name: round(s, 3) for name, s in self.sources.items()},
        }


class _Digest:
    """Counts and hashes a stream as it passes through."""

    def __init__(self) -> None:
        self.size = 0
        self._sha = hashlib.sha256()

    def through(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.size += len(chunk)
            self._sha.update(chunk)
            yield chunk

    @property
    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def plan_fingerprint(plan: Plan) -> str:
    """Hash of the normalized plan (secrets appear only as references), recorded in manifests."""
    return sha256_hex(plan.model_dump_json().encode())


def _ship_source(
    resources: Resources,
    snapshot_id: str,
    capture: Capture,
    source_name: str,
    source_type: str,
    failed_stores: dict[str, BaseException],
    progress: ProgressCallback | None,
) -> Artifact:
    """Stream one capture to every store still healthy; return the manifest entry."""
    plan = resources.plan
    live = [store for store in resources.stores if store.name not in failed_stores]
    encrypted_key = artifact_key(plan.name, snapshot_id, source_name, ENCRYPTED_EXTENSION)
    raw_key = artifact_key(plan.name, snapshot_id, source_name, capture.extension)
    uploads = [Upload(store, raw_key if store.wants_plaintext else encrypted_key) for store in live]
    raw_uploads = [u for u in uploads if u.store.wants_plaintext]
    sealed_uploads = [u for u in uploads if not u.store.wants_plaintext]
    plaintext, ciphertext = _Digest(), _Digest()

    def plaintext_feed() -> Iterator[bytes]:
        for chunk in plaintext.through(capture.chunks):
            for upload in raw_uploads:
                upload.send(chunk)
            if progress is not None:
                progress(source_name, plaintext.size)
            yield chunk

    context = artifact_context(plan.name, snapshot_id, source_name)
    compression = plan.compression
    try:
        stream = plaintext_feed()
        if compression.algorithm == "zstd":
            stream = compress_chunks(stream, compression.level)
        for chunk in ciphertext.through(encrypt_chunks(stream, resources.keys, context)):
            for upload in sealed_uploads:
                upload.send(chunk)
    except BaseException as error:
        finish_all(uploads, abort=error)
        raise
    finish_all(uploads)
    for upload in uploads:
        if upload.error is not None:
            failed_stores[upload.store.name] = upload.error
            log.warning(
                "store %s failed while storing %s: %s",
                upload.store.name,
                source_name,
                describe_failure(upload.error),
            )
    return Artifact(
        source=source_name,
        type=source_type,
        format=capture.format or capture.extension,
        compression=compression.algorithm,
        plaintext_size=plaintext.size,
        plaintext_sha256=plaintext.hexdigest,
        fingerprint=capture.fingerprint,
        tool_versions=capture.tool_versions,
        encrypted=StoredObject(
            key=encrypted_key, size=ciphertext.size, sha256=ciphertext.hexdigest
        ),
        raw=StoredObject(key=raw_key, size=plaintext.size, sha256=plaintext.hexdigest)
        if raw_uploads
        else None,
        key_names=[key.name for key in resources.keys],
    )


def _commit(
    resources: Resources, manifest: Manifest, failed_stores: dict[str, BaseException]
) -> list[StoreResult]:
    """Write the manifest to every store that holds all artifacts: the commit point."""
    data = manifest.to_bytes()
    key = manifest_key(manifest.plan, manifest.snapshot_id)
    results = []
    for store in resources.stores:
        error = failed_stores.get(store.name)
        if error is None:
            try:
                store.put(key, [data])
            except Exception as put_error:
                error = put_error
        results.append(
            StoreResult(
                store.name,
                store.region,
                error is None,
                None if error is None else describe_failure(error),
                _stored_bytes(manifest, store.wants_plaintext),
            )
        )
    return results


def _stored_bytes(manifest: Manifest, raw: bool) -> int:
    objects = [a.raw if raw else a.encrypted for a in manifest.artifacts]
    return sum(obj.size for obj in objects if obj is not None)


def _is_unreachable(error: BaseException | None) -> bool:
    return isinstance(error, StoreUnavailable) and not isinstance(error, StoreFull)


def _remove_leftovers(resources: Resources, snapshot_id: str, stores: Iterable[str]) -> None:
    """Best effort: delete artifacts of a snapshot that will never be committed."""
    from drkit.manifest import snapshot_prefix

    names = set(stores)
    for store in resources.stores:
        if store.name not in names:
            continue
        try:
            for key in store.list(snapshot_prefix(resources.plan.name, snapshot_id)):
                store.delete(key)
        except Exception as error:
            log.warning(
                "could not clean up %s in store %s: %s",
                snapshot_id,
                store.name,
                describe_failure(error),
            )


def run_backup(
    resources: Resources, *, progress: ProgressCallback | None = None, now: datetime | None = None
) -> BackupResult:
    """Take one snapshot of every source and ship it; never raises for a store failure."""
    plan = resources.plan
    taken_at = now or datetime.now(UTC)
    snapshot_id = new_snapshot_id(taken_at)
    started = time.monotonic()
    failed_stores: dict[str, BaseException] = {}
    artifacts: list[Artifact] = []
    timings: dict[str, float] = {}
    log.info(
        "backup %s: snapshot %s of %d source(s) to %d store(s)",
        plan.name,
        snapshot_id,
        len(plan.sources),
        len(resources.stores),
    )
    try:
        for spec in plan.sources:
            source_started = time.monotonic()
            source = make_source(spec)
            with source.snapshot() as capture:
                artifacts.append(
                    _ship_source(
                        resources,
                        snapshot_id,
                        capture,
                        spec.name,
                        spec.type,
                        failed_stores,
                        progress,
                    )
                )
            timings[spec.name] = time.monotonic() - source_started
            if len(failed_stores) == len(resources.stores):
                break
    except (DrkitError, OSError) as error:
        _remove_leftovers(resources, snapshot_id, [s.name for s in resources.stores])
        return BackupResult(
            plan.name,
            snapshot_id,
            taken_at,
            Outcome.FAILED,
            [StoreResult(s.name, s.region, False, "snapshot aborted", 0) for s in resources.stores],
            None,
            seconds=time.monotonic() - started,
            error=describe_failure(error),
            sources=timings,
        )
    manifest = Manifest(
        plan=plan.name,
        snapshot_id=snapshot_id,
        taken_at=taken_at,
        finished_at=datetime.now(UTC),
        drkit_version=__version__,
        sources=[spec.name for spec in plan.sources],
        artifacts=artifacts,
        plan_sha256=plan_fingerprint(plan),
    )
    if len(artifacts) < len(plan.sources):  # every store failed; nothing to commit
        results = [
            StoreResult(s.name, s.region, False, describe_failure(failed_stores[s.name]), 0)
            for s in resources.stores
        ]
    else:
        results = _commit(resources, manifest, failed_stores)
    # Clean up where the store can still be reached; an unreachable one would only cost its
    # timeouts again (its leftovers carry no manifest, so they never look complete).
    reachable_failures = [
        r.store for r in results if not r.ok and not _is_unreachable(failed_stores.get(r.store))
    ]
    _remove_leftovers(resources, snapshot_id, reachable_failures)
    outcome = judge_copies(plan.copies, results)
    return BackupResult(
        plan.name,
        snapshot_id,
        taken_at,
        outcome,
        results,
        manifest,
        plaintext_bytes=sum(a.plaintext_size for a in artifacts),
        stored_bytes=sum(a.encrypted.size for a in artifacts if a.encrypted is not None),
        seconds=time.monotonic() - started,
        error=None
        if outcome is Outcome.OK
        else "; ".join(f"{r.store}: {r.error}" for r in results if not r.ok),
        sources=timings,
    )


def record_backup(resources: Resources, result: BackupResult, run_id: int) -> None:
    """Write the snapshot and its copies to the catalog."""
    catalog = resources.catalog
    if catalog is None or result.manifest is None:
        return
    status = {Outcome.OK: "complete", Outcome.DEGRADED: "complete"}.get(
        result.outcome, "incomplete"
    )
    catalog.record_snapshot(result.manifest, status=status, run_id=run_id)
    manifest_sha = sha256_hex(result.manifest.to_bytes())
    for store in result.stores:
        catalog.record_copy(
            result.snapshot_id,
            store.store,
            store.region,
            "complete" if store.ok else "failed",
            error=store.error,
            bytes=store.bytes,
            manifest_sha256=manifest_sha if store.ok else None,
        )


def backup(resources: Resources, *, progress: ProgressCallback | None = None) -> BackupResult:
    """Run a backup as a catalog run: the run is recorded whatever happens."""
    catalog = resources.catalog
    run_id = catalog.start_run(resources.plan.name, "backup") if catalog is not None else None
    result: BackupResult | None = None
    try:
        result = run_backup(resources, progress=progress)
        result.run_id = run_id
        if catalog is not None and run_id is not None:
            record_backup(resources, result, run_id)
        return result
    finally:
        if catalog is not None and run_id is not None:
            with contextlib.suppress(Exception):
                catalog.finish_run(
                    run_id,
                    result.outcome.value if result is not None else "interrupted",
                    error=result.error if result is not None else "interrupted",
                    summary=result.to_json() if result is not None else None,
                )
