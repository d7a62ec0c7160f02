"""`drkit restore`: the on-call path. Locate a snapshot (catalog or stores), fetch and verify
every artifact from the first healthy store (failing over on an unreachable store, a missing
object or a failed integrity check), then load each source and check its fingerprint.
Nothing touches a target until every selected artifact is proven intact.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from drkit.actions.fanout import describe_failure
from drkit.actions.locate import SnapshotEntry, choose_snapshot, find_snapshots, read_manifest
from drkit.actions.resources import Resources, order_stores
from drkit.actions.staging import StagedArtifact, stage_artifact
from drkit.errors import (
    DrkitError,
    IntegrityError,
    RefusedError,
    StoreError,
    StoreUnavailable,
    UsageError,
)
from drkit.manifest import Manifest
from drkit.plan.schema import SourceSpec, secret
from drkit.sources import make_source
from drkit.sources.base import Source, Target, compare_fingerprints

log = logging.getLogger(__name__)
PHASES = ("locate", "fetch", "decrypt", "load", "verify")


@dataclass
class RestoreRequest:
    snapshot_id: str | None = None
    before: datetime | None = None
    sources: list[str] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)
    store_first: str | None = None
    force: bool = False
    staging_dir: Path | None = None
    #: a dry run reports what the safety rules would refuse instead of raising
    dry_run: bool = False


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
        }


@dataclass
class PreparedRestore:
    snapshot: SnapshotEntry
    manifest: Manifest
    stores: list[str]  # stores holding the snapshot, in the order they will be tried
    items: list[RestoreItem]
    expected_seconds: float | None
    phases: dict[str, float] = field(default_factory=dict)
    #: stores found unreachable during this restore: not tried again for the next sources,
    #: so a region that is down costs its timeout once, not once per artifact
    unreachable: dict[str, str] = field(default_factory=dict)
    #: what the safety rules refuse (only set on a dry run; a real run raises RefusedError)
    refusal: RefusedError | None = None

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.items)

    def to_json(self) -> dict[str, object]:
        return {
            "snapshot_id": self.snapshot.snapshot_id,
            "taken_at": self.manifest.taken_at.isoformat(),
            "origin": self.snapshot.origin,
            "stores": self.stores,
            "bytes": self.total_bytes,
            "expected_seconds": self.expected_seconds,
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


def _read_first_manifest(
    resources: Resources, stores: Sequence[str], snapshot_id: str, unreachable: dict[str, str]
) -> Manifest:
    """The snapshot's manifest from the first store that answers, in the restore's order."""
    problems = []
    tampered = False
    by_name = {store.name: store for store in resources.stores}
    for name in stores:
        try:
            return read_manifest(by_name[name], resources.plan.name, snapshot_id)[0]
        except (StoreError, IntegrityError) as error:
            reason = describe_failure(error)
            if isinstance(error, StoreUnavailable):
                unreachable[name] = reason
            tampered = tampered or isinstance(error, IntegrityError)
            problems.append(f"{name}: {reason}")
            log.warning("store %s: cannot read the manifest of %s: %s", name, snapshot_id, reason)
    if tampered:  # a store answered with a damaged manifest: not a network problem (exit 7)
        raise IntegrityError(f"no intact manifest of {snapshot_id}: " + "; ".join(problems))
    raise StoreUnavailable(f"no store holding {snapshot_id} answered: " + "; ".join(problems))


def prepare_restore(
    resources: Resources,
    request: RestoreRequest,
    *,
    target_overrides: dict[str, Target] | None = None,
) -> PreparedRestore:
    """Locate the snapshot, resolve targets and apply the safety rules; changes nothing.
    ``target_overrides`` (drills) maps sources to ready-made targets such as sandboxes."""
    started = time.monotonic()
    unknown_targets = set(request.targets) - {spec.name for spec in resources.plan.sources}
    if unknown_targets:
        raise UsageError(f"--to names unknown source {sorted(unknown_targets)[0]!r}")
    entry = choose_snapshot(
        find_snapshots(resources), snapshot_id=request.snapshot_id, before=request.before
    )
    ordered = [
        s.name
        for s in order_stores(resources.stores, request.store_first)
        if s.name in entry.stores
    ]
    unreachable: dict[str, str] = {}
    manifest = _read_first_manifest(resources, ordered, entry.snapshot_id, unreachable)
    items = []
    for spec in _selected_specs(resources, request.sources):
        if spec.name not in manifest.sources:
            raise UsageError(f"snapshot {entry.snapshot_id} does not contain source {spec.name!r}")
        artifact = manifest.artifact(spec.name)
        if target_overrides is not None and spec.name in target_overrides:
            target = target_overrides[spec.name]
        else:
            target = resolve_target(spec, request.targets.get(spec.name))
        items.append(RestoreItem(spec.name, spec.type, target, artifact.plaintext_size))
    refusal = _apply_safety_rules(
        resources, items, request.force, raise_refusal=not request.dry_run
    )
    expected = None
    if resources.catalog is not None:
        drill = resources.catalog.last_drill(resources.plan.name)
        expected = getattr(drill, "rto_seconds", None) if drill is not None else None
    prepared = PreparedRestore(
        entry, manifest, ordered, items, expected, unreachable=unreachable, refusal=refusal
    )
    prepared.phases["locate"] = time.monotonic() - started
    return prepared


def _apply_safety_rules(
    resources: Resources, items: list[RestoreItem], force: bool, *, raise_refusal: bool
) -> RefusedError | None:
    """Note what each non-empty target holds; refuse to replace it without ``force``."""
    occupied = []
    for item in items:
        source = make_source(resources.plan.source(item.source))
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
    resources: Resources, prepared: PreparedRestore, item: RestoreItem, directory: Path
) -> StagedArtifact:
    """Fetch one artifact from the first store that delivers it intact, failing over."""
    # Every store holds byte-identical objects and manifests, so the manifest read once
    # vouches for the object in whichever store delivers it.
    artifact = prepared.manifest.artifact(item.source)
    stores = {store.name: store for store in resources.stores}
    corrupt = False
    for position, name in enumerate(prepared.stores):
        if name in prepared.unreachable:
            item.failovers.append(f"{name}: skipped, unreachable ({prepared.unreachable[name]})")
            continue
        try:
            staged = stage_artifact(
                stores[name], prepared.manifest, artifact, resources.keys, directory
            )
        except (StoreError, IntegrityError) as error:
            corrupt = corrupt or isinstance(error, IntegrityError)
            if isinstance(error, StoreUnavailable):
                prepared.unreachable[name] = describe_failure(error)
            reason = describe_failure(error)
            item.failovers.append(f"{name}: {reason}")
            following = prepared.stores[position + 1 :]
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
    summary = f"no store could deliver {item.source}: " + "; ".join(item.failovers)
    if corrupt:
        raise IntegrityError(
            summary,
            hint="check the copies with `drkit verify PLAN`; an older "
            "snapshot may be intact (`drkit snapshots PLAN`)",
        )
    raise StoreUnavailable(summary)


def execute_restore(
    resources: Resources,
    prepared: PreparedRestore,
    *,
    force: bool,
    staging_dir: Path | None = None,
    on_phase: Callable[[str, str], None] | None = None,
) -> PreparedRestore:
    """Stage and verify every artifact, then load each source and verify its fingerprint."""
    directory = Path(tempfile.mkdtemp(prefix="drkit-restore-", dir=staging_dir))
    directory.chmod(0o700)
    phases = prepared.phases
    try:
        staged: list[tuple[RestoreItem, StagedArtifact]] = []
        for item in prepared.items:
            if on_phase:
                on_phase("fetch", item.source)
            artifact = _stage(resources, prepared, item, directory)
            phases["fetch"] = phases.get("fetch", 0.0) + artifact.fetch_seconds
            phases["decrypt"] = phases.get("decrypt", 0.0) + artifact.verify_seconds
            staged.append((item, artifact))
        for item, artifact in staged:
            if on_phase:
                on_phase("load", item.source)
            _load(resources, item, artifact, force, phases)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return prepared


def _load(
    resources: Resources,
    item: RestoreItem,
    staged: StagedArtifact,
    force: bool,
    phases: dict[str, float],
) -> None:
    source: Source = make_source(resources.plan.source(item.source))
    started = time.monotonic()
    with staged.open_plaintext(resources.keys) as stream:
        source.restore(stream, item.target, replace=force)
    loaded = time.monotonic()
    phases["load"] = phases.get("load", 0.0) + loaded - started
    expected = staged.artifact.fingerprint
    try:
        actual = source.fingerprint_target(item.target, expected)
        item.differences = compare_fingerprints(expected, actual)
    except DrkitError as error:
        item.differences = [f"cannot fingerprint the restored data: {error.message}"]
    phases["verify"] = phases.get("verify", 0.0) + time.monotonic() - loaded
