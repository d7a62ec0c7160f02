"""`drkit restore`: the on-call path. Locate a snapshot (catalog or stores), prove it with the
first store whose own manifest authenticates, fetch and verify every artifact (failing over on
an unreachable store, a store that cannot prove the snapshot, a missing object or a failed
integrity check), then load each source and check its fingerprint. Nothing touches a target
until every selected artifact is proven intact.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from drkit.actions.prediction import Prediction, predict_restore
from drkit.actions.resources import Resources
from drkit.actions.restore_swap import (
    check_staging_space,
    load_beside_and_swap,
    refuse_system_target,
)
from drkit.actions.side_by_side import Stopped, default_workers, run_side_by_side
from drkit.errors import (
    DrkitError,
    IntegrityError,
    RefusedError,
    StoreError,
    UsageError,
    describe_failure,
    is_unreachable,
)
from drkit.leases import private_directory
from drkit.plan.schema import SourceSpec, secret
from drkit.repository import (
    Manifest,
    SnapshotCopies,
    SnapshotEntry,
    StagedArtifact,
    choose_snapshot,
    find_snapshots,
    prove_entry,
)
from drkit.sources import make_source
from drkit.sources.base import (
    RESTORES_FROM_A_FILE,
    FaithfulRestore,
    Restored,
    Source,
    Target,
    compare_fingerprints,
)

log = logging.getLogger(__name__)
PHASES = ("locate", "fetch", "decrypt", "load", "verify")
_PROVING = threading.Lock()
#: (source, phase, bytes done, bytes in all or 0 when unknown)
RestoreProgress = Callable[[str, str, int, int], None]


@dataclass
class RestoreRequest:
    snapshot_id: str | None = None
    before: datetime | None = None
    sources: list[str] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)
    store_first: str | None = None
    #: use this store's copy only, no failover (a drill proving one regional copy)
    only_store: str | None = None
    force: bool = False
    staging_dir: Path | None = None
    #: a dry run reports what the safety rules would refuse instead of raising
    dry_run: bool = False
    #: roles a target lacks: require (refuse), create (NOLOGIN), skip (leave out what names
    #: them); None: create in throwaway sandboxes, skip in other sandboxes, else require
    roles: str | None = None


@dataclass
class RestoreItem:
    """One source of the snapshot and where it goes."""

    source: str
    type: str
    target: Target
    size: int
    replaces: str | None = None  # what --force replaces, for people
    store: str | None = None
    failovers: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    #: loaded straight into a drill's fresh sandbox (no staging copy, no swap)
    sandbox: bool = False
    #: where the target this restore replaced is kept, and the command that removes it
    previous: str | None = None
    previous_removal: str | None = None
    previous_removed: bool = False
    #: what the restore deliberately did not bring back (roles missing on the target, ...)
    left_out: list[str] = field(default_factory=list)
    #: this source's own seconds per phase (sources may restore side by side)
    phases: dict[str, float] = field(default_factory=dict)
    #: roles the snapshot names that the target's server lacks (PostgreSQL)
    missing_roles: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "type": self.type,
            "target": self.target.location,
            "bytes": self.size,
            "replaces": self.replaces,
            "store": self.store,
            "failovers": self.failovers,
            "verified": not self.differences,
            "differences": self.differences,
            "previous": self.previous,
            "previous_removal": self.previous_removal,
            "previous_removed": self.previous_removed,
            "left_out": self.left_out,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "missing_roles": self.missing_roles,
        }


@dataclass
class PreparedRestore:
    snapshot: SnapshotEntry
    copies: SnapshotCopies
    manifest: Manifest
    authenticated: bool
    items: list[RestoreItem]
    expected_seconds: float | None
    phases: dict[str, float] = field(default_factory=dict)
    #: from past restores and drills of this plan from the first store (drkit.actions.prediction)
    prediction: Prediction | None = None
    #: what the safety rules refuse (only set on a dry run; a real run raises RefusedError)
    refusal: RefusedError | None = None

    @property
    def stores(self) -> list[str]:
        """Stores holding the snapshot, in the order they will be tried."""
        return self.copies.stores

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.items)

    def to_json(self) -> dict[str, object]:
        return {
            "snapshot_id": self.snapshot.snapshot_id,
            "taken_at": self.manifest.taken_at.isoformat(),
            "origin": self.snapshot.origin,
            "manifest_authenticated": self.authenticated,
            "stores": self.stores,
            "untrusted_stores": self.copies.failures,
            "bytes": self.total_bytes,
            "expected_seconds": self.expected_seconds,
            "predicted": self.prediction.to_json() if self.prediction else None,
            "items": [item.to_json() for item in self.items],
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
        }


def resolve_target(spec: SourceSpec, override: str | None) -> Target:
    """The source's own location, or ``--to``: a full URL/path, or just a database name."""
    password = secret(getattr(spec, "password", None))
    resolved = password.resolve() if password is not None else None
    if spec.type in ("postgresql", "mysql"):
        url = spec.url
        if override:
            url = override if "://" in override else _with_database(spec.url, override)
        return Target(url, resolved)
    if spec.type == "sqlite":
        return Target(override or spec.path)
    return Target(override or "/")


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def _selected_specs(resources: Resources, names: Sequence[str]) -> list[SourceSpec]:
    known = {spec.name: spec for spec in resources.plan.sources}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"the plan has no source named {unknown[0]!r}", hint=f"sources: {', '.join(known)}"
        )
    return [known[name] for name in names] if names else list(known.values())


def _copies_of(
    resources: Resources, entry: SnapshotEntry, request: RestoreRequest
) -> SnapshotCopies:
    """The snapshot's copies in the order to try them (or the one store asked for)."""
    repository = resources.repository
    ordered = [
        store.name
        for store in repository.ordered_stores(request.only_store or request.store_first)
        if store.name in entry.stores
    ]
    if request.only_store is not None:
        ordered = ordered[:1] if ordered and ordered[0] == request.only_store else []
        if not ordered:
            raise UsageError(
                f"store {request.only_store} holds no complete copy of {entry.snapshot_id}"
            )
    copies = SnapshotCopies(repository, entry.snapshot_id, ordered, entry.manifest_sha256)
    copies.failures.update(entry.problems)  # stores that already failed to prove it
    return copies


def prepare_restore(
    resources: Resources,
    request: RestoreRequest,
    *,
    target_overrides: dict[str, Target] | None = None,
) -> PreparedRestore:
    """Locate and prove the snapshot, resolve targets and apply the safety rules; changes
    nothing. ``target_overrides`` (drills) maps sources to ready-made targets (sandboxes)."""
    started = time.monotonic()
    unknown_targets = set(request.targets) - {spec.name for spec in resources.plan.sources}
    if unknown_targets:
        raise UsageError(f"--to names unknown source {sorted(unknown_targets)[0]!r}")
    repository = resources.repository
    if request.only_store is not None:
        repository.store(request.only_store)  # a mistyped name is a usage error, first
    entry = choose_snapshot(
        find_snapshots(repository, resources.catalog, snapshot_id=request.snapshot_id),
        snapshot_id=request.snapshot_id,
        before=request.before,
        prove=lambda candidate: prove_entry(repository, candidate),
    )
    copies = _copies_of(resources, entry, request)
    opened = copies.first_proven()
    items = []
    for spec in _selected_specs(resources, request.sources):
        if spec.name not in opened.manifest.sources:
            raise UsageError(f"snapshot {entry.snapshot_id} does not contain source {spec.name!r}")
        artifact = opened.manifest.artifact(spec.name)
        if target_overrides is not None and spec.name in target_overrides:
            target = target_overrides[spec.name]
        else:
            target = resolve_target(spec, request.targets.get(spec.name))
        item = RestoreItem(spec.name, spec.type, target, artifact.plaintext_size)
        item.sandbox = target_overrides is not None and spec.name in target_overrides
        items.append(item)
    refusal = _apply_safety_rules(
        resources, items, request.force, raise_refusal=not request.dry_run
    )
    if refusal is None:
        refusal = _check_roles(
            items, opened.manifest, request.roles, raise_refusal=not request.dry_run
        )
    expected = None
    if resources.catalog is not None:
        drill = resources.catalog.last_drill(resources.plan.name)
        expected = drill.rto_seconds if drill is not None else None
    prepared = PreparedRestore(
        entry, copies, opened.manifest, opened.authenticated, items, expected, refusal=refusal
    )
    if resources.catalog is not None and request.dry_run:
        first = prepared.stores[0] if prepared.stores else None
        prepared.prediction = predict_restore(
            resources.catalog, resources.plan.name, first, prepared.total_bytes
        )
    prepared.phases["locate"] = time.monotonic() - started
    return prepared


def _apply_safety_rules(
    resources: Resources, items: list[RestoreItem], force: bool, *, raise_refusal: bool
) -> RefusedError | None:
    """Refuse system databases; note what each non-empty target holds; refuse to replace it
    without ``force``."""
    occupied = []
    for item in items:
        spec = resources.plan.source(item.source)
        if not item.sandbox:
            try:
                refuse_system_target(spec, item.target)
            except RefusedError as system_target:
                if raise_refusal:
                    raise
                return system_target
        source = make_source(spec)
        if not source.is_target_empty(item.target):
            item.replaces = source.describe_target(item.target)
            occupied.append(f"{item.source} -> {item.target.location} ({item.replaces})")
    if not occupied or force:
        return None
    refusal = RefusedError(
        "refusing to overwrite non-empty target(s): " + "; ".join(occupied),
        hint="add --force to replace them, or --to NAME=TARGET to restore elsewhere",
    )
    if raise_refusal:
        raise refusal
    return refusal


def _stage(
    resources: Resources,
    prepared: PreparedRestore,
    item: RestoreItem,
    directory: Path,
    progress: RestoreProgress | None = None,
) -> StagedArtifact:
    """Fetch one artifact from the first store that proves the snapshot and delivers the
    artifact intact, failing over store by store."""
    copies = prepared.copies
    errors: list[DrkitError] = []
    for position, name in enumerate(copies.stores):
        if name in copies.unreachable:
            item.failovers.append(f"{name}: skipped, unreachable ({copies.unreachable[name]})")
            continue
        with _PROVING:  # sources staged side by side may fail over at the same time
            opened = copies.prove(name)
        if opened is None:
            item.failovers.append(f"{name}: {copies.failures[name]}")
            continue
        try:
            staged = resources.repository.stage_artifact(
                resources.repository.store(name),
                opened.manifest,
                opened.manifest.artifact(item.source),
                directory,
                keep_plaintext=item.type in RESTORES_FROM_A_FILE,
                progress=None if progress is None else partial(progress, item.source),
            )
        except OSError as error:  # the staging disk, not the store: no other store helps
            raise DrkitError(
                f"cannot stage {item.source} in {directory}: {error.strerror or error}",
                hint="free space there (or point TMPDIR at a larger file system) and restore "
                "again; the target is unchanged",
            ) from None
        except (StoreError, IntegrityError) as error:
            errors.append(error)
            reason = describe_failure(error)
            if is_unreachable(error):
                copies.unreachable[name] = reason
            item.failovers.append(f"{name}: {reason}")
            following = copies.stores[position + 1 :]
            log.warning(
                "store %s failed for %s: %s%s",
                name,
                item.source,
                reason,
                f"; failing over to {following[0]}" if following else "",
            )
            continue
        item.store = name
        if item.failovers:
            log.warning("restoring %s from store %s after failover", item.source, name)
        return staged
    if any(isinstance(error, IntegrityError) for error in errors):
        raise IntegrityError(
            f"no store could deliver {item.source}: " + "; ".join(item.failovers),
            hint="check the copies with `drkit verify PLAN`; an older "
            "snapshot may be intact (`drkit snapshots PLAN`)",
        )
    raise copies.no_copy_error(f"no store could deliver {item.source}")


def execute_restore(
    resources: Resources,
    prepared: PreparedRestore,
    *,
    force: bool,
    staging_dir: Path | None = None,
    on_phase: Callable[[str, str], None] | None = None,
    progress: RestoreProgress | None = None,
    drop_previous: bool = False,
    roles: str | None = None,
    workers: int | None = None,
) -> PreparedRestore:
    """Stage and verify every artifact, then load each source and verify its fingerprint
    (beside its target, swapped in only once verified: see ``restore_swap``). ``progress``
    hears (source, phase, bytes done, bytes in all or 0) as each phase goes.
    Sources with distinct targets stage, then load, ``workers`` at a time (default: 2 on a
    machine with 2 cores or more); no load starts before every artifact is staged and proven.
    ``prepared.phases`` divide the wall time among the phases in proportion to the sources'
    own times (``item.phases``), so they add up to how long the restore took."""
    check_staging_space(
        Path(staging_dir or tempfile.gettempdir()), [item.size for item in prepared.items]
    )
    if workers is None:
        workers = default_workers()
    if len({item.target.location for item in prepared.items}) < len(prepared.items):
        workers = 1  # two sources into the same target: one after the other, in plan order
    # Private (0700) and leased: a killed restore's staged artifacts go with the next command.
    staging = private_directory("drkit-restore-", parent=staging_dir, plan=resources.plan.name)
    with staging as directory:
        staged: dict[str, StagedArtifact] = {}

        def stage(item: RestoreItem, stop: threading.Event) -> None:
            if on_phase:
                on_phase("fetch", item.source)
            staged[item.source] = _stage(
                resources, prepared, item, directory, _stoppable(progress, stop)
            )
            item.phases["fetch"] = staged[item.source].fetch_seconds
            item.phases["decrypt"] = staged[item.source].verify_seconds

        def load(item: RestoreItem, stop: threading.Event) -> None:
            if on_phase:
                on_phase("load", item.source)
            if progress:
                progress(item.source, "load", 0, 0)
            policy = roles or _default_roles(item)
            _load(
                resources,
                item,
                staged[item.source],
                force,
                item.phases,
                drop_previous=drop_previous,
                roles=policy,
            )

        started = time.monotonic()
        staging_run = run_side_by_side(prepared.items, stage, workers=workers)
        _spread(prepared, ("fetch", "decrypt"), time.monotonic() - started)
        staging_run.raise_first(prepared.items, None)  # nothing touched a target
        started = time.monotonic()
        loading = run_side_by_side(prepared.items, load, workers=workers)
        _spread(prepared, ("load", "verify"), time.monotonic() - started)
        loading.raise_first(prepared.items, lambda item: f"restore of {item.source}")
    return prepared


def _stoppable(progress: RestoreProgress | None, stop: threading.Event) -> RestoreProgress:
    """``progress``, raising Stopped at the next chunk once another source has failed."""

    def report(source: str, phase: str, done: int, total: int) -> None:
        if stop.is_set():
            raise Stopped(source)
        if progress is not None:
            progress(source, phase, done, total)

    return report


def _spread(prepared: PreparedRestore, names: Sequence[str], seconds: float) -> None:
    """Add ``seconds`` of wall time to ``names`` in proportion to the sources' own times."""
    spent = {name: sum(item.phases.get(name, 0.0) for item in prepared.items) for name in names}
    total = sum(spent.values())
    for name in names:
        share = spent[name] / total if total > 0 else 1 / len(names)
        prepared.phases[name] = prepared.phases.get(name, 0.0) + seconds * share


def _load(
    resources: Resources,
    item: RestoreItem,
    staged: StagedArtifact,
    force: bool,
    phases: dict[str, float],
    *,
    drop_previous: bool = False,
    roles: str = "require",
) -> None:
    spec = resources.plan.source(item.source)
    source: Source = make_source(spec)
    started = time.monotonic()
    verify_seconds = 0.0
    expected = staged.artifact.fingerprint
    restored = Restored()

    def load(stream: IO[bytes], target: Target, replace: bool) -> None:
        nonlocal restored
        if isinstance(source, FaithfulRestore):
            restored = source.restore_faithfully(
                stream,
                target,
                captured=expected,
                roles=roles,
                replace=replace,
                # a drill's sandbox never gets the roles' passwords or login
                private=None if item.sandbox else staged.artifact.private,
            )
            item.left_out = restored.left_out
        else:
            source.restore(stream, target, replace=replace)

    def verify(target: Target) -> list[str]:
        nonlocal verify_seconds
        verifying = time.monotonic()
        like = {key: value for key, value in expected.items() if key not in restored.unverified}
        try:
            actual = source.fingerprint_target(target, like)
            return compare_fingerprints(like, actual)
        except DrkitError as error:
            return [f"cannot fingerprint the restored data: {error.message}"]
        finally:
            verify_seconds += time.monotonic() - verifying

    if item.sandbox:  # a drill's fresh, empty sandbox: nothing there to protect
        with staged.open_plaintext(resources.keys) as stream:
            load(stream, item.target, force)
        item.differences = verify(item.target)
    else:

        def still_allowed() -> None:
            """Without --force, a target that was empty when the restore began must still be
            empty when its load starts (the load itself goes beside it)."""
            if force or item.replaces is not None or source.is_target_empty(item.target):
                return
            raise RefusedError(
                f"refusing to overwrite {item.target.location}: it became non-empty after the "
                f"restore began ({source.describe_target(item.target)})",
                hint="add --force to replace it (the replaced one is kept), or --to NAME=TARGET "
                "to restore elsewhere",
            )

        still_allowed()
        item.differences, outcome = load_beside_and_swap(
            spec,
            load,
            item.target,
            lambda: staged.open_plaintext(resources.keys),
            verify,
            plan=resources.plan.name,
            keep_previous=item.replaces is not None and not drop_previous,
        )
        item.previous, item.previous_removal = outcome.previous, outcome.removal_command
        item.previous_removed = outcome.previous_removed
    phases["load"] = phases.get("load", 0.0) + time.monotonic() - started - verify_seconds
    phases["verify"] = phases.get("verify", 0.0) + verify_seconds


def _check_roles(
    items: list[RestoreItem], manifest: Manifest, roles: str | None, *, raise_refusal: bool
) -> RefusedError | None:
    """Note the roles each PostgreSQL target lacks; with ``--roles require`` (the default),
    refuse before anything is fetched."""
    from drkit.sources.pg_fidelity import refuse_missing_roles
    from drkit.sources.postgresql_swap import roles_missing_on

    for item in items:
        if item.type != "postgresql" or item.sandbox:
            continue
        captured = manifest.artifact(item.source).fingerprint
        item.missing_roles = roles_missing_on(item.target, captured)
        if item.missing_roles and (roles or _default_roles(item)) == "require":
            refusal = refuse_missing_roles(item.missing_roles, f"the server of {item.target}")
            if raise_refusal:
                raise refusal
            return refusal
    return None


def _default_roles(item: RestoreItem) -> str:
    """Missing roles are created in a throwaway cluster and left out in other sandboxes (a
    shared server keeps no role a drill made). Elsewhere PostgreSQL refuses: restoring without
    owners and privileges would drop its REVOKEs and widen access; MariaDB leaves out the
    grants to missing accounts (which only narrows access) and lists them."""
    if item.target.throwaway:
        return "create"
    if item.sandbox or item.type != "postgresql":
        return "skip"
    return "require"
