"""Point-in-time restore of a PostgreSQL source with ``pitr:`` into a new data directory.

1. locate: the target moment must be inside some store's recoverable window (when the catalog
   knows the windows; without it drkit goes by the stores alone); the newest base backup that
   was consistent by then is chosen;
2. fetch + decrypt + load: the base backup is fetched and proven like any artifact (store
   failover) and unpacked into the folder;
3. replay: the server starts with a restore_command asking drkit for each WAL file (store
   failover, authentication: the server never holds a key), replays to the target and
   promotes itself. When no transaction committed after the target is in the WAL (the
   server's "recovery ended before configured recovery target was reached"), everything
   replayed is older than the target: the server starts again without the target and
   replays to the end, which is then exactly the state at the target.
4. The server keeps running on the port asked for (``restore``), or is stopped and deleted
   (drills, which check it first).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from drkit.actions.resources import Resources
from drkit.actions.restore import RestoreRequest, execute_restore, prepare_restore
from drkit.archive.fetch import WalFetcher, make_restore_command, python_for, serving
from drkit.archive.ledger import pitr_sources, store_windows
from drkit.archive.window import Window
from drkit.errors import IntegrityError, SandboxError, SnapshotNotFound, ToolError, UsageError
from drkit.leases import private_directory
from drkit.plan.schema import PostgresqlSource
from drkit.sandboxes import recovered_cluster as cluster
from drkit.sandboxes.cluster import (
    SERVER_USER,
    choose_free_port,
    choose_parent_directory,
)
from drkit.sources.base import Target

log = logging.getLogger(__name__)
REPLAY_TIMEOUT = 3600.0


@dataclass
class PitrRequest:
    target: cluster.RecoveryTarget
    directory: Path
    port: int | None = None
    source: str | None = None
    store_first: str | None = None
    force: bool = False
    #: listen on 127.0.0.1 too (not only the socket in the data directory)
    tcp: bool = True
    #: stop the server once recovered (drills check it first, then delete it)
    keep_running: bool = True


@dataclass
class PitrResult:
    source: str
    directory: Path
    port: int
    base_backup: str
    store: str | None
    target: datetime | None
    window: Window | None
    replayed_to_end: bool = False
    wal_files: int = 0
    #: the stores the WAL came from (more than one after a failover)
    wal_stores: list[str] = field(default_factory=list)
    failovers: list[str] = field(default_factory=list)
    #: the failovers away from a damaged or unreadable copy (a drill fails on each)
    faults: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "data_directory": str(self.directory),
            "port": self.port,
            "base_backup": self.base_backup,
            "store": self.store,
            "target": self.target.isoformat() if self.target else "latest",
            "window": self.window.to_json() if self.window else None,
            "replayed_to_end": self.replayed_to_end,
            "wal_files": self.wal_files,
            "wal_stores": self.wal_stores,
            "failovers": self.failovers,
            "phases": {name: round(value, 3) for name, value in self.phases.items()},
        }


def choose_source(resources: Resources, name: str | None) -> PostgresqlSource:
    sources = pitr_sources(resources.plan)
    if name is not None:
        chosen = [source for source in sources if source.name == name]
        if not chosen:
            raise UsageError(f"source {name!r} has no pitr: section in the plan")
        return chosen[0]
    if len(sources) != 1:
        raise UsageError(
            "point-in-time restore needs a PostgreSQL source with a pitr: section"
            if not sources
            else "the plan has several pitr sources",
            hint="name one with --source NAME" if sources else "see docs/pitr.md",
        )
    return sources[0]


def windows_for(resources: Resources, source: PostgresqlSource) -> list[Window]:
    if resources.catalog is None:
        return []
    return store_windows(resources.catalog, resources.plan, source)


def check_target(windows: list[Window], moment: datetime | None) -> Window | None:
    """The first store's window holding ``moment`` (the newest end for the latest); a usage
    error naming the windows when none does. None without a catalog."""
    usable = [window for window in windows if not window.is_empty]
    if not windows:
        return None
    if moment is None:
        return max(usable, key=lambda w: w.end) if usable else None  # type: ignore[arg-type,return-value]
    for window in usable:
        if window.contains(moment):
            return window
    described = "; ".join(
        f"{w.store}: {w.start:%Y-%m-%d %H:%M:%S} to {w.end:%Y-%m-%d %H:%M:%S} UTC" for w in usable
    )
    raise UsageError(
        f"{moment.isoformat()} is outside every store's recoverable window",
        hint=f"windows: {described or 'none yet'} (drkit status PLAN)",
    )


def restore_to_moment(
    resources: Resources,
    request: PitrRequest,
    *,
    on_phase: Callable[[str, str], None] | None = None,
) -> PitrResult:
    """Restore, replay to the target, promote; see the module docstring."""
    started = time.monotonic()
    source = choose_source(resources, request.source)
    parent = request.directory.parent
    if cluster.run_as_prefix() and not cluster.is_reachable_by_server_user(parent):
        raise UsageError(
            f"the {SERVER_USER} user cannot reach {parent}, where the data directory goes",
            hint="choose a folder others may traverse (chmod o+x on every folder above it)",
        )
    window = check_target(windows_for(resources, source), request.target.moment)
    prepared = None
    before = request.target.moment
    while prepared is None:
        restore = RestoreRequest(
            before=before,
            sources=[source.name],
            store_first=request.store_first,
            force=request.force,
        )
        candidate = prepare_restore(
            resources, restore, target_overrides={source.name: Target(str(request.directory))}
        )
        info = candidate.manifest.artifact(source.name).fingerprint.get("base_backup")
        if not info:
            raise UsageError(f"snapshot {candidate.snapshot.snapshot_id} holds no base backup")
        moment = request.target.moment
        if moment is not None and datetime.fromisoformat(info["end_time"]) > moment:
            before = candidate.manifest.taken_at  # consistent only after the target: older
            continue
        prepared = candidate
    result = PitrResult(
        source.name,
        request.directory,
        request.port or choose_free_port(),
        prepared.snapshot.snapshot_id,
        None,
        request.target.moment,
        window,
    )
    result.phases["locate"] = time.monotonic() - started
    execute_restore(resources, prepared, force=request.force, on_phase=on_phase)
    result.store = prepared.items[0].store
    result.failovers = list(prepared.items[0].failovers)
    result.faults = list(prepared.items[0].failovers)
    for phase in ("fetch", "decrypt", "load"):
        result.phases[phase] = prepared.phases.get(phase, 0.0)
    if on_phase:
        on_phase("replay", source.name)
    replayed = time.monotonic()
    replay(resources, source, request, result)
    result.phases["replay"] = time.monotonic() - replayed
    return result


def replay(
    resources: Resources, source: PostgresqlSource, request: PitrRequest, result: PitrResult
) -> None:
    """Start the restored folder with drkit's restore_command until it promotes."""
    data = request.directory
    stores = [store for store in resources.repository.ordered_stores(request.store_first)]
    fetcher = WalFetcher(resources.plan.name, source.name, stores, resources.keys)
    owner = SERVER_USER if cluster.run_as_prefix() else None
    parent = choose_parent_directory(for_another_user=owner is not None)
    with private_directory("drkit-pitr-", parent=parent, plan=resources.plan.name) as folder:
        if owner is not None:
            cluster.hand_over(folder)
        with serving(fetcher, folder, owner) as socket_path:
            command = make_restore_command(socket_path, python_for(owner is not None))
            target = request.target
            lines = cluster.recovery_lines(target, command, result.port, folder, tcp=request.tcp)
            try:
                _start(data, lines, owner)
            except (ToolError, SandboxError):  # pg_ctl failed, or the server stopped later
                if not _may_replay_to_end(data, target, fetcher, result.window):
                    _raise_replay_failure(data, fetcher)
                # no commit after the target in the WAL: replay it all (docs/pitr.md)
                log.info("no transaction after the target in the WAL; replaying to its end")
                result.replayed_to_end = True
                cluster.clear_log(data)
                latest = cluster.RecoveryTarget(None)
                lines = cluster.recovery_lines(
                    latest, command, result.port, folder, tcp=request.tcp
                )
                try:
                    _start(data, lines, owner)
                except (ToolError, SandboxError):
                    _raise_replay_failure(data, fetcher)
            if fetcher.log.damaged:  # recovery stopped early at the damage: not the target
                _raise_replay_failure(data, fetcher)
            cluster.finish_recovery(data)
            result.wal_files = len(fetcher.log.served)
            result.wal_stores = sorted(set(fetcher.log.served.values()))
            result.failovers += fetcher.log.failovers
            result.faults += fetcher.log.faults
            if not request.keep_running:
                cluster.stop(data)


def _start(data: Path, lines: list[str], owner: str | None) -> None:
    cluster.write_settings(data, lines)
    if owner is not None:
        cluster.hand_over(data)
    cluster.start(data, {}, REPLAY_TIMEOUT)
    cluster.wait_until_promoted(data, REPLAY_TIMEOUT)


def _may_replay_to_end(
    data: Path, target: cluster.RecoveryTarget, fetcher: WalFetcher, window: Window | None
) -> bool:
    """True when the server stopped only because no commit follows the target in the WAL,
    and the window proves the stores hold everything written up to the target."""
    if target.moment is None or fetcher.log.damaged or not cluster.target_not_reached(data):
        return False
    if window is None or not window.contains(target.moment):
        log.warning("the catalog cannot prove the stores hold WAL up to the target")
        return False
    return True


def _raise_replay_failure(data: Path, fetcher: WalFetcher) -> NoReturn:
    cluster.stop(data, immediate=True)
    if fetcher.log.damaged:
        raise IntegrityError(
            "WAL damaged in every store: " + ", ".join(fetcher.log.damaged),
            hint="restore to a moment before it, or from another store",
        )
    raise SnapshotNotFound(
        f"the restored server did not recover: {cluster.log_tail(data)}",
        hint=f"read {data / cluster.LOG_NAME}; check `drkit status PLAN` for gaps in the WAL",
    )
