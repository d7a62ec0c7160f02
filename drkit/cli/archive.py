"""`drkit archive` (continuous WAL archiving) and `drkit wal fetch` (one WAL file, for a
restore_command outside drkit restore)."""

from __future__ import annotations

import functools
import logging
import signal
import threading
from pathlib import Path

import click

from drkit.cli.context import Context
from drkit.cli.resources import opened_resources
from drkit.errors import ExitCode
from drkit.plan.schema import Plan

log = logging.getLogger(__name__)


@click.command(
    "archive",
    epilog="""\b
Examples:
  drkit archive plans/orders.yaml                  # runs until SIGTERM / Ctrl-C
  drkit archive plans/orders.yaml --source orders  # a plan with several pitr sources
  drkit archive plans/ledger.yaml                  # a MariaDB source: its binary log
  drkit archive plans/sessions.yaml                # a SQLite source (journal_mode=WAL)
\b
Start it before the first base backup (drkit backup), and keep it running: under systemd
(docs/deployment.md) or as the Deployment `drkit k8s render` writes. One per source.
Exit: 0 stopped by a signal, 5 another archiver runs for the source, 12 no catalog.""",
)
@click.argument("plan_file", type=click.Path())
@click.option("--source", "source_name", metavar="NAME", help="The pitr source to archive.")
@click.pass_obj
def archive_command(context: Context, plan_file: str, source_name: str | None) -> int:
    """Ship the log of PLAN's source with a pitr: section to every store, continuously:
    a PostgreSQL source's WAL (every segment, the unfinished one, timeline history files), a
    MariaDB/MySQL source's binary log (every binlog file, the one being written), a SQLite
    source's committed write-ahead log frames."""
    from drkit.actions.archive import archive

    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        log.info("stopping: shipping what the spool holds, then exiting")
        stop.set()

    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    for number in previous:
        signal.signal(number, request_stop)
    try:
        with opened_resources(context, plan_file) as resources:
            archive(
                resources,
                stop,
                source_name=source_name,
                on_event=functools.partial(notify_archive_event, resources.plan),
            )
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return int(ExitCode.OK)


def notify_archive_event(plan: Plan, event: str, outcome: str, summary: str) -> None:
    """One archiver event (a gap, a store failing past stall_after, its recovery) to the
    plan's webhooks; a failing webhook is one log line."""
    from drkit.monitoring.notify import notify

    payload = {"job": "archive", "outcome": outcome, "summary": summary, "errors": []}
    for problem in notify(plan, event, payload):
        log.warning("plan %s: notification: %s", plan.name, problem)


@click.group("wal")
def wal_group() -> None:
    """WAL archived by `drkit archive`."""


@wal_group.command(
    "fetch",
    epilog="""\b
Examples:
  drkit wal fetch plans/orders.yaml 000000010000000000000003 /tmp/segment
  # as a standby's restore_command (the server's user must be able to run drkit):
  restore_command = 'drkit wal fetch /etc/drkit/orders.yaml %f %p'
\b
Exit: 0 written, 10 no store has it, 7 it exists but no store delivers it intact.""",
)
@click.argument("plan_file", type=click.Path())
@click.argument("name")
@click.argument("destination", type=click.Path())
@click.option("--source", "source_name", metavar="NAME", help="The pitr source.")
@click.option("--store", "store_first", metavar="NAME", help="Try this store first.")
@click.pass_obj
def fetch_command(
    context: Context,
    plan_file: str,
    name: str,
    destination: str,
    source_name: str | None,
    store_first: str | None,
) -> int:
    """Fetch one WAL file (segment, or NNNNNNNN.history) to DESTINATION, failing over
    between stores; a partial segment is served padded when the segment never completed."""
    from drkit.actions.pitr import choose_source
    from drkit.archive.fetch import WalFetcher, write_atomically

    with opened_resources(context, plan_file, catalog_optional=True) as resources:
        source = choose_source(resources, source_name)
        stores = resources.repository.ordered_stores(store_first)
        fetcher = WalFetcher(resources.plan.name, source.name, stores, resources.keys)
        data = fetcher.fetch(name)
    if data is None:
        click.echo(f"drkit: {name}: no store has it", err=True)
        return int(ExitCode.NOT_FOUND)
    write_atomically(data, Path(destination))
    if not context.quiet:
        store = fetcher.log.served.get(name)
        click.echo(f"{name}: {len(data)} bytes from store {store}", err=True)
    return int(ExitCode.OK)
