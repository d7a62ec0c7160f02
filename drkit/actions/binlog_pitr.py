"""Point-in-time restore of a MariaDB/MySQL source with ``pitr:`` into a database.

1. locate: the moment must be inside some store's recoverable window (when the catalog knows
   the windows); the newest dump whose snapshot was taken by then is chosen;
2. fetch + decrypt + load: the dump is restored into the target database like any snapshot
   (store failover, fingerprint verified);
3. fetch binlog: every archived binlog file from the dump's file on, from the first store
   that has it intact (failing over as for WAL), into a private folder;
4. replay: ``mariadb-binlog --start-position=<dump's position> --stop-datetime=<moment>``
   over those files, only the source database's events, renamed to the target database,
   piped into the client.

The binary log stamps events in whole seconds: the replay stops before the first event
stamped at or after the moment's second, so nothing committed after the moment is replayed
(nor what committed earlier in that same second). docs/pitr.md says so.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from drkit.actions.pitr import check_target
from drkit.actions.resources import Resources
from drkit.actions.restore import RestoreRequest, execute_restore, prepare_restore
from drkit.archive.binlog_fetch import BinlogFetcher
from drkit.archive.ledger import binlog_sources, binlog_store_windows, pitr_sources
from drkit.archive.window import Window
from drkit.errors import SourceError, ToolError, UsageError
from drkit.execute import Command, Process
from drkit.leases import private_directory
from drkit.plan.schema import MysqlSource
from drkit.sources.base import Target
from drkit.sources.binlog_stream import (
    BinlogFile,
    gtid_sequence,
    make_replay_command,
    parse_binlog_name,
    parse_gtid,
)
from drkit.sources.mysql import (
    CLIENT_PROGRAMS,
    make_restore_command,
    pick_program,
    write_option_file,
)
from drkit.sources.urls import parse_database_url

log = logging.getLogger(__name__)
BINLOG_PROGRAMS = ("mariadb-binlog", "mysqlbinlog")


@dataclass
class BinlogPitrRequest:
    #: None: everything the stores hold
    moment: datetime | None
    #: --to: a database name or URL (default the source's own database, refused unless empty)
    target: str | None = None
    source: str | None = None
    store_first: str | None = None
    force: bool = False
    #: a ready-made target (a drill's scratch database) instead of ``target``
    target_override: Target | None = None
    #: --gtid: replay up to and including this transaction (instead of a moment)
    gtid: str | None = None


@dataclass
class BinlogPitrResult:
    source: str
    database: str
    dump: str
    store: str | None
    target: datetime | None
    window: Window | None
    gtid: str | None = None
    binlog_files: list[str] = field(default_factory=list)
    binlog_stores: list[str] = field(default_factory=list)
    failovers: list[str] = field(default_factory=list)
    #: the failovers away from a damaged or unreadable copy (a drill fails on each)
    faults: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "database": self.database,
            "dump": self.dump,
            "store": self.store,
            "target": self.gtid or (self.target.isoformat() if self.target else "latest"),
            "window": self.window.to_json() if self.window else None,
            "binlog_files": self.binlog_files,
            "binlog_stores": self.binlog_stores,
            "failovers": self.failovers,
            "phases": {name: round(value, 3) for name, value in self.phases.items()},
        }


def choose_binlog_source(resources: Resources, name: str | None) -> MysqlSource | None:
    """The MariaDB source with pitr: the request names (or the plan's only one); None when
    the plan has none (a PostgreSQL point-in-time restore then)."""
    sources = binlog_sources(resources.plan)
    if name is not None:
        return next((source for source in sources if source.name == name), None)
    return sources[0] if len(sources) == 1 and not pitr_sources(resources.plan) else None


def effective_moment(moment: datetime) -> datetime:
    """The moment as the binlog can tell it: its second (events are stamped in seconds)."""
    return moment.replace(microsecond=0)


def restore_binlog_to_moment(
    resources: Resources,
    source: MysqlSource,
    request: BinlogPitrRequest,
    *,
    on_phase: Callable[[str, str], None] | None = None,
) -> BinlogPitrResult:
    """Load the newest dump before the moment, replay the binlog up to it; see the module."""
    started = time.monotonic()
    moment = effective_moment(request.moment) if request.moment is not None else None
    gtid = parse_gtid(request.gtid) if request.gtid is not None else None
    if request.gtid is not None and gtid is None:
        raise UsageError(
            f"--gtid {request.gtid!r} is not a MariaDB GTID",
            hint="give DOMAIN-SERVER-SEQUENCE, e.g. 0-1-2041 (SELECT @@gtid_binlog_pos)",
        )
    windows = (
        binlog_store_windows(resources.catalog, resources.plan, source)
        if resources.catalog is not None
        else []
    )
    window = check_target(windows, moment)
    before = moment
    while True:
        prepared = prepare_restore(
            resources,
            RestoreRequest(
                before=before,
                sources=[source.name],
                targets={source.name: request.target} if request.target else {},
                store_first=request.store_first,
                force=request.force,
            ),
            target_overrides={source.name: request.target_override}
            if request.target_override
            else None,
        )
        info = prepared.manifest.artifact(source.name).fingerprint.get("binlog") or {}
        if "file" not in info:
            raise UsageError(
                f"snapshot {prepared.snapshot.snapshot_id} names no binlog position",
                hint="it was taken before the source had pitr:; take a backup (drkit backup)",
            )
        if gtid is not None:
            reached = gtid_sequence(str(info.get("gtid") or ""), gtid[0])
            if reached is None or reached < gtid[2]:
                break
        elif moment is None or datetime.fromisoformat(info["time"]) <= moment:
            break
        before = prepared.manifest.taken_at  # taken after the target: an older one
    [item] = prepared.items
    database = parse_database_url(item.target.location).require_database()
    result = BinlogPitrResult(
        source.name,
        database,
        prepared.snapshot.snapshot_id,
        None,
        request.moment,
        window,
        request.gtid,
    )
    result.phases["locate"] = time.monotonic() - started
    execute_restore(resources, prepared, force=request.force, on_phase=on_phase)
    if item.differences:
        raise SourceError(
            f"the dump loaded into {database} differs from the backup: {item.differences[0]}"
        )
    result.store, result.failovers = item.store, list(item.failovers)
    result.faults = list(item.failovers)
    for phase in ("fetch", "decrypt", "load"):
        result.phases[phase] = prepared.phases.get(phase, 0.0)
    start = parse_binlog_name(str(info["file"]))
    assert start is not None
    fetcher = BinlogFetcher(
        resources.plan.name,
        source.name,
        resources.repository.ordered_stores(request.store_first),
        resources.keys,
    )
    with private_directory("drkit-binlog-", plan=resources.plan.name) as folder:
        if on_phase:
            on_phase("fetch binlog", source.name)
        fetched = time.monotonic()
        files = fetch_binlogs(fetcher, start, folder)
        if request.gtid is not None:
            require_gtid(files, int(info["position"]), request.gtid)
        result.phases["fetch binlog"] = time.monotonic() - fetched
        result.binlog_files = [path.name for path in files]
        result.binlog_stores = sorted(set(fetcher.log.served.values()))
        result.failovers += fetcher.log.failovers
        result.faults += fetcher.log.faults
        if on_phase:
            on_phase("replay", source.name)
        replayed = time.monotonic()
        replay(source, item.target, files, int(info["position"]), moment, folder, request.gtid)
        result.phases["replay"] = time.monotonic() - replayed
    return result


def fetch_binlogs(fetcher: BinlogFetcher, start: BinlogFile, folder: Path) -> list[Path]:
    """Every archived binlog file from ``start`` on, in order, until one no store has."""
    files = []
    number = start.number
    while (data := fetcher.fetch(BinlogFile(number, start.base).name)) is not None:
        path = folder / BinlogFile(number, start.base).name
        path.write_bytes(data)
        files.append(path)
        number += 1
    if not files:
        raise UsageError(
            f"no store holds binlog {start.name}, where the dump starts",
            hint="check `drkit status PLAN` for the window and gaps",
        )
    return files


def require_gtid(files: list[Path], position: int, gtid: str) -> None:
    """UsageError unless transaction ``gtid`` is in the archived binlog after the dump (a
    replay to a GTID that is not there would silently replay everything)."""
    command = Command(
        (pick_program(BINLOG_PROGRAMS), f"--start-position={position}", *map(str, files))
    )
    marker = re.compile(rb"\tGTID " + re.escape(gtid.encode()) + rb"( |$)")
    found = False
    with Process(command) as listing:  # read as it is decoded: binlogs can be large
        for line in listing.stdout:
            found = found or marker.search(line.rstrip(b"\n")) is not None
        listing.finish()
    if not found:
        raise UsageError(
            f"transaction {gtid} is not in the archived binlog after the dump",
            hint="check the GTID (SELECT @@gtid_binlog_pos on the source) and `drkit status "
            "PLAN` for the window; a GTID before the oldest dump cannot be reached",
        )


def replay(
    source: MysqlSource,
    target: Target,
    files: list[Path],
    position: int,
    moment: datetime | None,
    folder: Path,
    gtid: str | None = None,
) -> None:
    """mariadb-binlog over ``files`` piped into the client connected to ``target``."""
    source_database = parse_database_url(source.url).require_database()
    target_url = parse_database_url(target.location)
    replay_command = make_replay_command(
        files,
        start_position=position,
        stop=moment,
        database=source_database,
        rename_to=target_url.require_database(),
        program=pick_program(BINLOG_PROGRAMS),
        stop_gtid=gtid,
    )
    option_file = write_option_file(folder, target.password) if target.password else None
    client = make_restore_command(
        target_url, option_file=option_file, program=pick_program(CLIENT_PROGRAMS)
    )
    with (
        Process(replay_command) as reader,
        Process(client, stdin_file=reader.stdout, stdout=False) as writer,
    ):
        reader.stdout.close()  # the client holds the pipe now
        try:
            writer.finish()
            reader.finish()
        except ToolError as error:
            raise SourceError(
                f"replaying the binlog into {target_url.database} failed: {error.message}",
                hint="the database holds the dump and part of the binlog; restore again "
                "with --force",
            ) from None
