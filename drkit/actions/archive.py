"""`drkit archive`: run the WAL archiver of a plan's PITR source until stopped, recording
every WAL file in the continuity ledger as each store makes it durable."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from drkit.actions.pitr import choose_source
from drkit.actions.resources import Resources
from drkit.archive.archiver import Archiver, RoundReport
from drkit.archive.binlog_archiver import BinlogArchiver
from drkit.archive.ledger import (
    ContinuousSource,
    binlog_sources,
    continuous_sources,
    sqlite_sources,
)
from drkit.archive.sqlite_capture import SqliteArchiver
from drkit.errors import CatalogError
from drkit.home import drkit_home
from drkit.plan.schema import Plan, PostgresqlSource


def spool_folder(plan: str, source: ContinuousSource) -> Path:
    """Where pg_receivewal (mariadb-binlog, the SQLite capture) writes: the plan's ``spool``,
    else under $DRKIT_HOME."""
    assert source.pitr is not None
    if source.pitr.spool:
        return Path(source.pitr.spool)
    return drkit_home() / "spool" / plan / source.name


def make_archiver(resources: Resources, source_name: str | None) -> Archiver:
    catalog = resources.catalog
    if catalog is None:
        raise CatalogError(
            "drkit archive needs the catalog: it records which store holds which WAL",
            hint="check --catalog / DRKIT_CATALOG (drkit catalog upgrade)",
        )
    plan = resources.plan
    captured = [s for s in sqlite_sources(plan) if source_name in (None, s.name)]
    if captured and (source_name is not None or len(continuous_sources(plan)) == 1):
        return SqliteArchiver(
            plan,
            captured[0],
            resources.stores,
            resources.keys,
            spool_folder(plan.name, captured[0]),
            ledger=catalog,
        )
    binlog = [s for s in binlog_sources(plan) if source_name in (None, s.name)]
    if binlog and (source_name is not None or (len(binlog) == 1 and not _has_wal_source(plan))):
        return BinlogArchiver(
            plan,
            binlog[0],
            resources.stores,
            resources.keys,
            spool_folder(plan.name, binlog[0]),
            ledger=catalog,
        )
    source = choose_source(resources, source_name)
    return Archiver(
        plan,
        source,
        resources.stores,
        resources.keys,
        spool_folder(plan.name, source),
        ledger=catalog,
    )


def archive(
    resources: Resources,
    stop: threading.Event,
    *,
    source_name: str | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
    on_event: Callable[[str, str, str], None] | None = None,
) -> None:
    """Archive until ``stop`` is set; ``on_event`` hears of gaps and stalled stores."""
    archiver = make_archiver(resources, source_name)
    if on_event is not None:
        archiver.on_event = on_event
    archiver.run(stop, on_round=on_round)


def _has_wal_source(plan: Plan) -> bool:
    return any(isinstance(s, PostgresqlSource) and s.pitr is not None for s in plan.sources)
