"""`drkit drill`: prove recovery. Provision sandboxes, restore a snapshot into them, run the
plan's checks, measure RTO per phase and RPO, compare with the objectives, record everything,
and tear the sandboxes down: always, on success, failure and interruption.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drkit.actions.checks import CheckResult, run_checks
from drkit.actions.resources import Resources
from drkit.actions.restore import (
    PreparedRestore,
    RestoreProgress,
    RestoreRequest,
    execute_restore,
    prepare_restore,
)
from drkit.actions.tracking import tracked_run
from drkit.errors import DrkitError, describe_failure
from drkit.outcome import Outcome
from drkit.plan.durations import humanize_seconds
from drkit.repository import SnapshotEntry, choose_snapshot, find_snapshots, prove_entry
from drkit.sources.base import Target

log = logging.getLogger(__name__)
PHASES = ("provision", "fetch", "decrypt", "load", "checks")


@dataclass
class DrillResult:
    plan: str
    snapshot_id: str | None
    store: str | None
    started_at: datetime
    #: ok (restored, every check passed, objectives met), breached, failed or interrupted
    outcome: Outcome = Outcome.INTERRUPTED
    phases: dict[str, float] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    rto_objective: float | None = None
    rpo_objective: float | None = None
    breaches: list[str] = field(default_factory=list)
    sandbox_kinds: list[str] = field(default_factory=list)
    error: str | None = None
    drill_id: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "plan": self.plan,
            "snapshot_id": self.snapshot_id,
            "store": self.store,
            "started_at": self.started_at.isoformat(),
            "outcome": self.outcome.value,
            "rto_seconds": _round(self.rto_seconds),
            "rto_objective_seconds": self.rto_objective,
            "rpo_seconds": _round(self.rpo_seconds),
            "rpo_objective_seconds": self.rpo_objective,
            "phases": {name: round(value, 3) for name, value in self.phases.items()},
            "checks": [check.to_json() for check in self.checks],
            "breaches": self.breaches,
            "sandboxes": self.sandbox_kinds,
            "error": self.error,
            "drill_id": self.drill_id,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _prepare(
    resources: Resources, entry: SnapshotEntry, store: str | None, targets: dict[str, Target]
) -> PreparedRestore:
    # Drilling one regional copy: no failover, or a broken copy would hide behind another.
    request = RestoreRequest(snapshot_id=entry.snapshot_id, only_store=store)
    return prepare_restore(resources, request, target_overrides=targets)


def _judge(resources: Resources, result: DrillResult) -> None:
    objectives = resources.plan.objectives
    if objectives is not None:
        result.rto_objective = objectives.rto.total_seconds()
        result.rpo_objective = objectives.rpo.total_seconds()
        if result.rto_seconds is not None and result.rto_seconds > result.rto_objective:
            result.breaches.append(
                f"RTO {humanize_seconds(result.rto_seconds)} exceeds the objective "
                f"{humanize_seconds(result.rto_objective)} by "
                f"{humanize_seconds(result.rto_seconds - result.rto_objective)}"
            )
        if result.rpo_seconds is not None and result.rpo_seconds > result.rpo_objective:
            result.breaches.append(
                f"RPO {humanize_seconds(result.rpo_seconds)} exceeds the objective "
                f"{humanize_seconds(result.rpo_objective)} by "
                f"{humanize_seconds(result.rpo_seconds - result.rpo_objective)}"
            )
    if result.error is not None or any(check.passed is False for check in result.checks):
        result.outcome = Outcome.FAILED
    elif result.breaches:
        result.outcome = Outcome.BREACHED
    else:
        result.outcome = Outcome.OK


def drill_once(
    resources: Resources,
    entry: SnapshotEntry,
    newest: SnapshotEntry,
    store: str | None,
    progress: RestoreProgress | None = None,
) -> DrillResult:
    """One drill of one snapshot (from one store, or the first healthy one); ``progress`` as
    for a restore (the sandboxes and the checks count as phases of ``sandboxes``)."""
    from drkit.sandboxes import open_sandboxes

    result = DrillResult(resources.plan.name, entry.snapshot_id, store, datetime.now(UTC))
    started = time.monotonic()
    if progress:
        progress("sandboxes", "provision", 0, 0)
    try:
        with open_sandboxes(
            resources.plan, postgresql_major=_postgres_major(resources, entry)
        ) as sandboxes:
            result.phases["provision"] = time.monotonic() - started
            result.sandbox_kinds = sorted({sandbox.kind for sandbox in sandboxes.sandboxes})
            prepared = _prepare(resources, entry, store, dict(sandboxes.targets))
            execute_restore(resources, prepared, force=True, progress=progress)
            for phase in ("fetch", "decrypt", "load"):
                result.phases[phase] = prepared.phases.get(phase, 0.0)
            result.store = ",".join(sorted({i.store for i in prepared.items if i.store}))
            checks_started = time.monotonic()
            if progress:
                progress("sandboxes", "checks", 0, 0)
            result.checks = run_checks(
                resources, prepared, sandboxes.reader_targets(), sandboxes.environment()
            )
            result.phases["checks"] = (
                time.monotonic() - checks_started + prepared.phases.get("verify", 0.0)
            )
        result.rto_seconds = sum(result.phases.get(phase, 0.0) for phase in PHASES)
    except DrkitError as error:
        result.error = describe_failure(error)
        log.error("drill of %s failed: %s", entry.snapshot_id, result.error)
    if newest.taken_at is not None:
        result.rpo_seconds = (result.started_at - newest.taken_at).total_seconds()
    _judge(resources, result)
    return result


def _postgres_major(resources: Resources, entry: SnapshotEntry) -> str | None:
    """The PostgreSQL major version a snapshot was taken from, so the ephemeral sandbox
    cluster matches it where that version is installed."""
    if resources.catalog is None:
        return None
    record = resources.catalog.get_snapshot(entry.snapshot_id)
    for artifact in record.artifacts if record is not None else ():
        version = str(artifact.fingerprint.get("server_version", ""))
        if artifact.type == "postgresql" and version:
            return version.split(".")[0]
    return None


def record_drill(resources: Resources, result: DrillResult, run_id: int | None) -> None:
    if resources.catalog is None or result.snapshot_id is None:
        return
    from drkit.catalog import DrillCheck, DrillInput

    result.drill_id = resources.catalog.record_drill(
        DrillInput(
            plan=result.plan,
            snapshot_id=result.snapshot_id,
            store=result.store or "",
            started_at=result.started_at,
            finished_at=datetime.now(UTC),
            outcome=result.outcome,
            run_id=run_id,
            sandbox_kinds=tuple(result.sandbox_kinds),
            rto_seconds=result.rto_seconds,
            rpo_seconds=result.rpo_seconds,
            phases=result.phases,
            checks=tuple(DrillCheck(c.name, c.passed, c.measured, c.detail) for c in result.checks),
            error=result.error or ("; ".join(result.breaches) or None),
        )
    )


def drill(
    resources: Resources,
    *,
    store: str | None = None,
    all_stores: bool = False,
    snapshot_id: str | None = None,
    progress: RestoreProgress | None = None,
) -> list[DrillResult]:
    """Drill the newest complete snapshot (or a named one), once or once per store. A plan
    with pitr: sources drills those to a random moment of their window instead."""
    if any(getattr(source, "pitr", None) is not None for source in resources.plan.sources):
        from drkit.actions.pitr_drill import drill_pitr_sources

        return drill_pitr_sources(resources, store=store, all_stores=all_stores)
    repository = resources.repository
    if store is not None:
        repository.store(store)  # a mistyped name is a usage error, before anything is recorded
    entries = find_snapshots(repository, resources.catalog, snapshot_id=snapshot_id)

    def prove(entry: SnapshotEntry) -> bool:
        return prove_entry(repository, entry)

    newest = choose_snapshot(entries, prove=prove)
    entry = (
        choose_snapshot(entries, snapshot_id=snapshot_id, prove=prove) if snapshot_id else newest
    )
    stores: list[str | None] = [store]
    if all_stores:
        stores = [s.name for s in resources.stores if s.name in entry.stores]
    return [_tracked_drill(resources, entry, newest, each, progress) for each in stores]


def _tracked_drill(
    resources: Resources,
    entry: SnapshotEntry,
    newest: SnapshotEntry,
    store: str | None,
    progress: RestoreProgress | None = None,
) -> DrillResult:
    """One drill recorded as a catalog run and a drill record, however it ends."""
    return run_recorded(
        resources,
        entry.snapshot_id,
        store,
        lambda: drill_once(resources, entry, newest, store, progress),
    )


def run_recorded(
    resources: Resources,
    snapshot_id: str | None,
    store: str | None,
    perform: Callable[[], DrillResult],
) -> DrillResult:
    """Run ``perform`` as a catalog run whose drill is recorded, however it ends."""
    with tracked_run(resources, "drill") as tracker:
        result = DrillResult(resources.plan.name, snapshot_id, store, datetime.now(UTC))
        try:
            result = perform()
        finally:
            if result.outcome is Outcome.INTERRUPTED and result.error is None:
                result.error = "interrupted"
            record_drill(resources, result, tracker.id)
        tracker.outcome = result.outcome
        tracker.error = result.error or ("; ".join(result.breaches) or None)
        tracker.summary = result.to_json()
    return result
