"""The drill of a MariaDB/MySQL source with ``pitr:``: restore to a random moment of a store's
recoverable window into a scratch database on the drill's sandbox server
(``drill.sandbox.mysql``), and prove where it landed with the opt-in heartbeat, as for
PostgreSQL (``pitr_drill``). The binlog tells seconds only: the landing is checked against
the moment's second, which is where the replay stops (``binlog_pitr``)."""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime, timedelta

from drkit.actions.binlog_pitr import (
    BinlogPitrRequest,
    effective_moment,
    restore_binlog_to_moment,
)
from drkit.actions.checks import CheckResult, copy_checks, moment_checks
from drkit.actions.drill import DrillResult, _judge
from drkit.actions.pitr_drill import LANDING_SLACK, choose_window
from drkit.actions.resources import Resources
from drkit.archive.ledger import binlog_store_windows
from drkit.archive.window import Window
from drkit.errors import DrkitError, SandboxError, UsageError, describe_failure
from drkit.plan.schema import MysqlSource, secret
from drkit.sandboxes.scratch_mysql import ScratchMysql
from drkit.sources.base import Target
from drkit.sources.binlog_stream import HEARTBEAT_TABLE
from drkit.sources.mysql import connect, fetch_all
from drkit.sources.urls import parse_database_url

log = logging.getLogger(__name__)


def binlog_pitr_drill(
    resources: Resources,
    source: MysqlSource,
    *,
    store: str | None = None,
    chance: random.Random | None = None,
) -> DrillResult:
    """One drill of ``source`` to a random moment of one store's window."""
    result = DrillResult(resources.plan.name, None, store, datetime.now(UTC))
    result.sandbox_kinds = [ScratchMysql.kind]
    try:
        catalog = resources.catalog
        windows = binlog_store_windows(catalog, resources.plan, source) if catalog else []
        window = choose_window(windows, store)
        target = random_whole_moment(window, chance or random.Random())
        result.store = window.store
        result.snapshot_id = window.base_backups[-1]
        if window.end is not None:
            result.rpo_seconds = (result.started_at - window.end).total_seconds()
        settings = resources.plan.drill.sandbox
        if settings.mysql is None:
            raise SandboxError(
                f"source {source.name} is a MySQL database but the plan sets no "
                "drill.sandbox.mysql",
                hint="set drill.sandbox.mysql to a server URL where scratch databases may be "
                "created, e.g. mysql://root@sandbox.internal:3306/",
            )
        with ScratchMysql(
            settings.mysql, secret(settings.password), plan=resources.plan.name
        ) as sandbox:
            scratch = sandbox.target_for(source)
            request = BinlogPitrRequest(
                target,
                source=source.name,
                store_first=window.store,
                force=True,
                target_override=scratch,
            )
            restored = restore_binlog_to_moment(resources, source, request)
            result.snapshot_id = restored.dump
            result.phases.update(restored.phases)
            checks_started = time.monotonic()
            result.checks = [
                CheckResult("target", None, target.isoformat(), f"store {window.store}"),
                *copy_checks(source.name, restored.faults),
                *landing_checks(source, scratch, effective_moment(target)),
                *moment_checks(resources, source.name, sandbox.reader_target_for(source)),
            ]
            result.phases["checks"] = time.monotonic() - checks_started
        result.rto_seconds = sum(result.phases.values())
    except DrkitError as error:
        result.error = describe_failure(error)
        log.error("point-in-time drill of %s failed: %s", source.name, result.error)
    _judge(resources, result)
    return result


def random_whole_moment(window: Window, chance: random.Random) -> datetime:
    """A random moment of the window whose second (where the replay stops) is inside it too:
    the window starts mid-second, at the dump."""
    assert window.start is not None and window.end is not None
    first = effective_moment(window.start)
    if first < window.start:
        first += timedelta(seconds=1)
    span = (window.end - first).total_seconds()
    if span < 0:
        raise UsageError(
            f"store {window.store}'s window is shorter than a second: nothing to drill yet",
            hint="let `drkit archive PLAN` run a little longer",
        )
    return first + timedelta(seconds=chance.uniform(0, span))


def landing_checks(source: MysqlSource, scratch: Target, moment: datetime) -> list[CheckResult]:
    """Where the replay stopped, from the heartbeat rows (when the plan writes them): none at
    or after the moment's second, the newest at most one interval (and a second) before."""
    assert source.pitr is not None
    every = source.pitr.heartbeat_every
    if every is None:
        return [CheckResult("heartbeat", None, None, "no heartbeat configured: landing unchecked")]
    naive = moment.astimezone(UTC).replace(tzinfo=None)  # the column holds UTC, without zone
    try:
        with connect(parse_database_url(scratch.location), scratch.password) as connection:
            [(newest, later)] = fetch_all(
                connection,
                f"SELECT MAX(IF(at < %s, at, NULL)), SUM(at >= %s) FROM {HEARTBEAT_TABLE}",
                naive,
                naive,
            )
    except DrkitError as error:
        return [CheckResult("heartbeat", False, None, f"cannot read {HEARTBEAT_TABLE}: {error}")]
    except Exception as error:  # the table is missing: pymysql's error
        return [CheckResult("heartbeat", False, None, f"cannot read {HEARTBEAT_TABLE}: {error}")]
    later = int(later or 0)
    none_later = CheckResult(
        "no heartbeat after the target", later == 0, later, f"{later} rows later"
    )
    if newest is None:
        return [none_later, CheckResult("newest heartbeat", False, None, "no heartbeat row")]
    gap = (naive - newest).total_seconds()
    close = newest >= naive - every - LANDING_SLACK
    detail = f"{gap:.3f}s before the target's second (allowed {every.total_seconds() + 1:.0f}s)"
    return [none_later, CheckResult("newest heartbeat", close, round(gap, 3), detail)]
