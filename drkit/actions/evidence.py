"""Evidence a third party can verify: every backup, verify, drill and restore of a plan with
an ``evidence:`` section appends a signed record to the plan's hash-chained log in the catalog
and copies it to every store; ``verify_evidence`` checks a log with the public key alone.

A record says what ran and how it ended (times, outcome, error line), what the run's catalog
summary says (phases, RTO/RPO, check results, per-store copy results and Object Lock states),
the plan lock's holder, the plan's keys (names, types, KMS key ids) and, for each snapshot the
run touched, its manifest hash and the state of each copy. It holds nothing a catalog row does
not already hold: no secret, no data (docs/evidence.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drkit.actions.resources import Resources
from drkit.catalog import EvidenceHead, RunTracker
from drkit.crypto.evidence import ChainCheck, record_hash, seal_record, verify_chain
from drkit.crypto.signing import EvidenceSigner, PublicKey, signer_for
from drkit.errors import DrkitError, UsageError, describe_failure
from drkit.outcome import Outcome
from drkit.plan.schema import Plan

log = logging.getLogger(__name__)


def make_signer(plan: Plan) -> EvidenceSigner | None:
    """The signer the plan names, or None when it keeps no evidence log."""
    return None if plan.evidence is None else signer_for(plan.evidence)


def record_evidence(
    resources: Resources,
    kind: str,
    tracker: RunTracker,
    started_at: datetime,
    error: BaseException | None = None,
) -> EvidenceHead | None:
    """Append the run's signed record and copy it to every store. Never raises: a run's own
    outcome stands; a record that could not be made is logged as an error (the run is still in
    the catalog, and the next record chains on without a gap)."""
    signer = make_signer(resources.plan)
    catalog = resources.catalog
    if signer is None or catalog is None:
        return None
    plan = resources.plan.name
    sealed: dict[int, str] = {}

    def seal(seq: int, prev: str, moment: datetime) -> tuple[str, str]:
        line, digest = seal_record(plan, seq, prev, moment.isoformat(), event, signer)
        sealed[seq] = line
        return line, digest

    try:
        event = describe_event(resources, kind, tracker, started_at, error)
        if not catalog.evidence_heads([plan]):
            try:
                adopt_store_log(resources, signer)
            except (ValueError, KeyError, TypeError) as failure:  # a store log not adoptable
                log.warning("evidence log in the stores not adopted: %s", failure)
        head = catalog.append_evidence(plan, seal)
    except DrkitError as failure:
        log.error("evidence of this %s not recorded: %s", kind, failure.message)
        return None
    copy_to_stores(resources, head.count, sealed[head.count])
    return head


def adopt_store_log(resources: Resources, signer: EvidenceSigner) -> None:
    """A catalog without the plan's log (new, or rebuilt after a loss) first adopts the
    longest log a store holds that verifies with the plan's own key, so the chain goes on
    instead of starting again at 1 and overwriting the stores' records."""
    assert resources.catalog is not None
    public = PublicKey(signer.public_der())
    best: list[str] = []
    for store in resources.stores:
        try:
            lines = resources.repository.read_evidence(store)
        except Exception as failure:  # an unreachable store: another may hold the log
            log.warning(
                "evidence log in store %s unreadable: %s", store.name, describe_failure(failure)
            )
            continue
        if len(lines) > len(best) and verify_chain(lines, public).ok:
            best = lines
    if not best:
        return
    records = []
    for line in best:
        record = json.loads(line)
        moment = datetime.fromisoformat(str(record["recorded_at"]))
        records.append((int(record["seq"]), record_hash(line), moment, line))
    if resources.catalog.import_evidence(resources.plan.name, records):
        log.info(
            "adopted %d evidence records of %s from the stores", len(records), resources.plan.name
        )


def copy_to_stores(resources: Resources, count: int, line: str) -> None:
    """Write record ``count`` to every store, and any earlier record a store lacks (it was
    down when that record was made): each store ends up holding the whole log."""
    assert resources.catalog is not None
    log_lines: list[str] | None = None
    for store in resources.stores:
        try:
            resources.repository.write_evidence(store, count, line)
            missing = set(range(1, count)) - resources.repository.evidence_positions(store)
            if missing and log_lines is None:
                log_lines = resources.catalog.read_evidence(resources.plan.name)
            for seq in sorted(missing):
                if log_lines is not None and seq <= len(log_lines):
                    resources.repository.write_evidence(store, seq, log_lines[seq - 1])
        except Exception as failure:  # one store down must not stop the copies to the rest
            log.warning(
                "evidence record %d not copied to store %s: %s",
                count,
                store.name,
                describe_failure(failure),
            )


def describe_event(
    resources: Resources,
    kind: str,
    tracker: RunTracker,
    started_at: datetime,
    error: BaseException | None,
) -> dict[str, Any]:
    outcome, message = tracker.outcome, tracker.error
    if error is not None:
        interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
        outcome = Outcome.INTERRUPTED if interrupted else Outcome.FAILED
        message = describe_failure(error)
    catalog = resources.catalog
    assert catalog is not None
    lock = catalog.read_lock(resources.plan.name)
    summary = tracker.summary or {}
    return {
        "kind": kind,
        "run_id": tracker.id,
        "outcome": str(outcome),
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "error": message,
        "lock": None
        if lock is None
        else {"owner": lock.owner, "expires_at": lock.expires_at.isoformat()},
        "keys": [describe_key(key) for key in resources.plan.keys],
        "snapshots": [describe_snapshot(resources, each) for each in touched_snapshots(summary)],
        "summary": summary,
    }


def describe_key(key: Any) -> dict[str, str]:
    described = {"name": key.name, "type": key.type}
    if key.type == "aws-kms":
        described |= {"key_id": key.key_id, "region": key.region}
    return described


def touched_snapshots(summary: dict[str, Any]) -> list[str]:
    """Snapshot ids a run's summary names (backup, drill: one; verify: one per copy)."""
    found = [summary.get("snapshot_id")]
    found += [
        copy.get("snapshot_id") for copy in summary.get("copies") or [] if isinstance(copy, dict)
    ]
    found += [
        item.get("snapshot_id") for item in summary.get("items") or [] if isinstance(item, dict)
    ]
    return sorted({each for each in found if isinstance(each, str)})


def describe_snapshot(resources: Resources, snapshot_id: str) -> dict[str, Any]:
    assert resources.catalog is not None
    record = resources.catalog.get_snapshot(snapshot_id)
    if record is None:
        return {"snapshot_id": snapshot_id, "in_catalog": False}
    return {
        "snapshot_id": snapshot_id,
        "status": record.status,
        "manifest_sha256": record.manifest_sha256,
        "copies": [
            {
                "store": copy.store,
                "region": copy.region,
                "status": copy.status,
                "bytes": copy.bytes,
                "manifest_sha256": copy.manifest_sha256,
                "last_verify_ok": copy.last_verify_ok,
                "last_verified_at": copy.last_verified_at.isoformat()
                if copy.last_verified_at
                else None,
            }
            for copy in record.copies
        ],
    }


# --- checking a log ------------------------------------------------------------------------


def read_public_key(path: str) -> PublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read public key {path}: {error.strerror}") from None
    return PublicKey(data)


def read_log_file(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise UsageError(f"cannot read evidence log {path}: {error.strerror}") from None


def read_store_log(resources: Resources, store_name: str) -> list[str]:
    """The plan's evidence log as ``store_name`` holds it (no catalog needed)."""
    return resources.repository.read_evidence(resources.repository.store(store_name))


def verify_evidence(
    lines: Iterable[str], public_key: PublicKey, *, head: str | None, count: int | None
) -> ChainCheck:
    return verify_chain(lines, public_key, head=head, count=count)
