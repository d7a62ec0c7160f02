"""`drkit backup`: one recovery point of every source of a plan, shipped to all its stores at
once through the repository's commit protocol (``drkit.repository.writer``). The copy policy
decides the outcome (ok / degraded / failed) and the catalog records it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drkit.actions.resources import Resources
from drkit.actions.tracking import tracked_run
from drkit.catalog import CopyInput
from drkit.errors import DrkitError, describe_failure
from drkit.outcome import Outcome
from drkit.plan.schema import Copies, Plan
from drkit.repository import (
    CommittedSnapshot,
    Compression,
    ProgressCallback,
    SnapshotWriter,
    StoreResult,
)
from drkit.sources import make_source

log = logging.getLogger(__name__)


@dataclass
class BackupResult:
    plan: str
    snapshot_id: str
    taken_at: datetime
    outcome: Outcome
    stores: list[StoreResult]
    committed: CommittedSnapshot | None
    plaintext_bytes: int = 0
    stored_bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    run_id: int | None = None
    sources: dict[str, float] = field(default_factory=dict)
    #: what a source left out without failing, ``source: what``
    warnings: list[str] = field(default_factory=list)

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
            "warnings": self.warnings,
        }


def judge_copies(copies: Copies, results: list[StoreResult]) -> Outcome:
    """OK when every store holds the snapshot; DEGRADED when the copy policy still holds."""
    complete = [result for result in results if result.ok]
    regions = {result.region for result in complete}
    if len(complete) < copies.min_stores or len(regions) < copies.min_regions or not complete:
        return Outcome.FAILED
    return Outcome.OK if len(complete) == len(results) else Outcome.DEGRADED


def plan_fingerprint(plan: Plan) -> str:
    """Hash of the normalized plan (secrets appear only as references), recorded in manifests."""
    return hashlib.sha256(plan.model_dump_json().encode()).hexdigest()


def _capture_all(
    resources: Resources,
    writer: SnapshotWriter,
    progress: ProgressCallback | None,
    warnings: list[str],
) -> dict[str, float]:
    """Read every source once into the writer; stop early when every store has failed."""
    timings: dict[str, float] = {}
    for spec in resources.plan.sources:
        started = time.monotonic()
        with make_source(spec).snapshot() as capture:
            writer.add(spec.name, spec.type, capture, progress)
            warnings.extend(f"{spec.name}: {warning}" for warning in capture.warnings)
        timings[spec.name] = time.monotonic() - started
        if not writer.live_stores:
            break
    return timings


def run_backup(
    resources: Resources, *, progress: ProgressCallback | None = None, now: datetime | None = None
) -> BackupResult:
    """Take one snapshot of every source and ship it; never raises for a store failure."""
    plan = resources.plan
    taken_at = now or datetime.now(UTC)
    compression = Compression(plan.compression.algorithm, plan.compression.level)
    with resources.repository.writing(taken_at, compression, plan_fingerprint(plan)) as writer:
        return _write_snapshot(resources, writer, taken_at, progress)


def _write_snapshot(
    resources: Resources,
    writer: SnapshotWriter,
    taken_at: datetime,
    progress: ProgressCallback | None,
) -> BackupResult:
    """Capture every source into ``writer`` and commit; a failing source aborts it."""
    plan = resources.plan
    started = time.monotonic()
    log.info(
        "backup %s: snapshot %s of %d source(s) to %d store(s)",
        plan.name,
        writer.snapshot_id,
        len(plan.sources),
        len(resources.stores),
    )
    result = BackupResult(plan.name, writer.snapshot_id, taken_at, Outcome.FAILED, [], None)
    try:
        result.sources = _capture_all(resources, writer, progress, result.warnings)
    except (DrkitError, OSError) as error:
        writer.abort()
        result.stores = [
            StoreResult(s.name, s.region, False, "snapshot aborted", 0) for s in resources.stores
        ]
        result.error = describe_failure(error)
        result.seconds = time.monotonic() - started
        return result
    except BaseException:
        writer.abort(reachable_only=True)  # Ctrl-C, SIGTERM: leave nothing behind, then stop
        raise
    committed = writer.commit([spec.name for spec in plan.sources])
    if committed is None:  # every store failed before the last source: nothing to commit
        result.stores = [
            StoreResult(s.name, s.region, False, describe_failure(writer.failed[s.name]), 0)
            for s in resources.stores
        ]
    else:
        result.stores = committed.stores
        result.committed = committed
        result.plaintext_bytes = sum(a.plaintext_size for a in committed.manifest.artifacts)
        result.stored_bytes = committed.manifest.stored_size(wants_plaintext=False)
    result.outcome = judge_copies(plan.copies, result.stores)
    if result.outcome is not Outcome.OK:
        result.error = "; ".join(f"{r.store}: {r.error}" for r in result.stores if not r.ok)
    result.seconds = time.monotonic() - started
    return result


def record_backup(resources: Resources, result: BackupResult, run_id: int) -> None:
    """Write the snapshot and its copies to the catalog."""
    catalog, committed = resources.catalog, result.committed
    if catalog is None or committed is None:
        return
    catalog.record_backup(
        committed.manifest,
        status="incomplete" if result.outcome is Outcome.FAILED else "complete",
        run_id=run_id,
        manifest_sha256=committed.manifest_sha256,
        copies=[
            CopyInput(
                store.store,
                store.region,
                "complete" if store.ok else "failed",
                error=store.error,
                bytes=store.bytes,
                manifest_sha256=committed.manifest_sha256 if store.ok else None,
            )
            for store in result.stores
        ],
    )


def backup(resources: Resources, *, progress: ProgressCallback | None = None) -> BackupResult:
    """Run a backup as a catalog run: the run is recorded whatever happens."""
    with tracked_run(resources, "backup") as tracker:
        result = run_backup(resources, progress=progress)
        result.run_id = tracker.id
        if tracker.id is not None:
            record_backup(resources, result, tracker.id)
        tracker.outcome, tracker.error, tracker.summary = (
            result.outcome,
            result.error,
            result.to_json(),
        )
    return result
