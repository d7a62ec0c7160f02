"""The command line: thin click commands that parse, load the plan, call one action, and render
text for people or ``--json`` for scripts. This package is the only place that maps errors and
outcomes to exit codes (``drkit.errors.ExitCode``; outcomes in ``drkit.cli.outcomes``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import select
import signal
import sys

import click
from click.utils import make_default_short_help

from drkit import __version__
from drkit.cli.context import Context, configure_logging, echo_json
from drkit.cli.error_report import (
    command_path,
    error_document,
    report_error,
    report_usage_error,
    wants_json,
)
from drkit.errors import DrkitError, ExitCode, SourceError

EPILOG = """\b
Examples:
  drkit check plans/payments.yaml          # every preflight, in seconds
  drkit backup plans/payments.yaml
  drkit restore plans/payments.yaml --dry-run
  drkit drill plans/payments.yaml && drkit status plans/
  drkit diff plans/payments.yaml latest~1 latest   # what changed since the one before
  drkit runbook                            # on call: which runbook for which symptom
\b
Exit codes: 0 ok, 1 failed, 2 usage or plan error, 3 degraded, 4 objective breached,
  5 locked, 6 no store reachable, 7 integrity, 8 key, 9 refused, 10 not found,
  11 missing or too old a program, 12 catalog, 130 interrupted.
"""


#: command name -> (module, attribute). Commands are imported when invoked, so `drkit backup`
#: does not pay for the report, monitoring or Kubernetes code (start-up time, memory).
COMMANDS = {
    "plan": ("drkit.cli.plan", "plan_group"),
    "check": ("drkit.cli.check", "check_command"),
    "keys": ("drkit.cli.keys", "keys_group"),
    "backup": ("drkit.cli.backup", "backup_command"),
    "snapshots": ("drkit.cli.snapshots", "snapshots_command"),
    "info": ("drkit.cli.snapshots", "info_command"),
    "diff": ("drkit.cli.snapshots", "diff_command"),
    "restore": ("drkit.cli.restore", "restore_command"),
    "archive": ("drkit.cli.archive", "archive_command"),
    "wal": ("drkit.cli.archive", "wal_group"),
    "verify": ("drkit.cli.verify", "verify_command"),
    "prune": ("drkit.cli.prune", "prune_command"),
    "drill": ("drkit.cli.drill", "drill_command"),
    "status": ("drkit.cli.report", "status_command"),
    "report": ("drkit.cli.report", "report_command"),
    "run": ("drkit.cli.run", "run_command"),
    "metrics": ("drkit.cli.metrics", "metrics_command"),
    "k8s": ("drkit.cli.k8s", "k8s_group"),
    "catalog": ("drkit.cli.catalog", "catalog_group"),
    "cleanup": ("drkit.cli.cleanup", "cleanup_command"),
    "demo": ("drkit.cli.demo", "demo_command"),
    "runbook": ("drkit.cli.runbook", "runbook_command"),
    "evidence": ("drkit.cli.evidence", "evidence_group"),
}

#: command name -> its one-line summary for `drkit --help`, so listing the commands imports
#: none of them (tests/cli/test_output.py checks each against the command's own help)
SUMMARIES = {
    "plan": "Check and explain plan files.",
    "check": "Check that PLAN can run: secrets resolve, keys wrap and unwrap a test data key, stores answer and take a write (a probe that is removed again), servers answer and pg_dump is new enough for them, the MariaDB client and the drill sandboxes' programs are installed.",
    "keys": "Key-encryption keys.",
    "backup": "Snapshot every source of PLAN once and ship it to all its stores at once.",
    "snapshots": "List the snapshots of PLAN, newest first: from the catalog, or a store's manifests.",
    "info": "Show one snapshot of PLAN: its sources, formats and sizes, tables with row counts, files, keys, the stores holding it with their verify state, and its drills.",
    "diff": "Show what changed in PLAN's data from snapshot FIRST to snapshot SECOND: tables whose rows or content changed, tables and files added or removed, files whose hash changed.",
    "restore": "Restore the newest complete snapshot of PLAN (or one you pick), failing over between stores; works without the catalog, from the stores' manifests.",
    "archive": "Ship the log of PLAN's source with a pitr: section to every store, continuously: a PostgreSQL source's WAL (every segment, the unfinished one, timeline history files), a MariaDB/MySQL source's binary log (every binlog file, the one being written), a SQLite source's committed write-ahead log frames.",
    "wal": "WAL archived by `drkit archive`.",
    "verify": "Re-read every copy in every store: hashes, authentication, manifests.",
    "prune": "Delete the snapshots of PLAN that its retention policy no longer keeps.",
    "drill": "Restore PLAN's newest snapshot into throwaway sandboxes, run the plan's checks, and measure RTO (per phase) and RPO against the objectives.",
    "status": "One line per plan: last backup, copies, RPO now and drill-verified RPO, last drill RTO.",
    "report": "A compliance report per plan: backups due/taken/complete, copies per region, keys, drills, RTO p50/p95/max and worst RPO against the objectives, failures, evidence.",
    "run": "Run the jobs of every plan (files or folders of *.yaml), one lock per plan.",
    "metrics": "Compute drkit's Prometheus metrics for PLANS (files or folders) from the catalog: last run, outcome and success per job, snapshot bytes per store, RPO and drill-verified RPO, last drill RTO, objectives and breaches.",
    "k8s": "Run plans on Kubernetes (see docs/deployment.md).",
    "catalog": "The catalog of runs, snapshots, copies and drills (SQLite or PostgreSQL).",
    "cleanup": "Remove what drkit processes that died on this host left behind (sandbox clusters, scratch databases and their users, staging and scratch folders, their children) once sure they are dead, and record their runs as interrupted.",
    "demo": "Create a small API backend (SQLite + config folder), back it up to two local regions, drill a restore into a sandbox, then print status, RTO, RPO and a report.",
    "evidence": "The signed evidence log of backups, verifies, drills and restores.",
    "runbook": "Print an on-call runbook (numbered steps with exact commands); without NAME, the index saying which page helps with which symptom.",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attribute = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their summaries, without importing them (``drkit --help``)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in SUMMARIES:
                summary = make_default_short_help(SUMMARIES[name], limit)
            else:
                command = self.get_command(ctx, name)
                summary = command.get_short_help_str(limit) if command else ""
            rows.append((name, summary))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drkit")
@click.option(
    "--catalog",
    "catalog_url",
    envvar="DRKIT_CATALOG",
    metavar="URL",
    help="Catalog database (SQLAlchemy URL). Default: $DRKIT_HOME/catalog.db.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="-v: progress of each step; -vv: debug, with every external command and its output.",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="Only errors and results: no warnings, no progress bars."
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "text", "json"]),
    default="auto",
    show_default=True,
    help="Log lines on stderr as text, or JSON lines; auto: JSON inside a Kubernetes pod.",
)
@click.pass_context
def cli(
    click_context: click.Context,
    catalog_url: str | None,
    verbose: int,
    quiet: bool,
    log_format: str,
) -> None:
    """drkit: encrypted multi-region backups, restore with failover, and restore drills that
    prove recovery with measured RTO and RPO."""
    configure_logging(verbose=verbose, quiet=quiet, log_format=log_format)
    click_context.obj = Context(catalog_url=catalog_url, verbose=verbose, quiet=quiet)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `drkit` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = wants_json(args)
    try:
        result = cli.main(args=args, prog_name="drkit", standalone_mode=False)
    except DrkitError as error:
        report_error(error, command=command_path(cli, args), as_json=as_json)
        return int(error.exit_code)
    except click.exceptions.Abort:
        click.echo("drkit: interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except click.ClickException as error:
        report_usage_error(error, as_json=as_json)
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        click.echo("drkit: interrupted; nothing half-written is marked complete", err=True)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError as error:
        return broken_pipe(error, as_json=as_json)
    except SystemExit as exit_:
        # click turns a broken pipe anywhere in a command into a silent exit 1
        cause = exit_.__context__
        if isinstance(cause, BrokenPipeError):
            return broken_pipe(cause, as_json=as_json)
        raise
    except Exception as error:
        server_error = database_server_error(error)
        if server_error is not None:
            report_error(server_error, command=command_path(cli, args), as_json=as_json)
            return int(server_error.exit_code)
        report_internal_error(error, as_json=as_json)
        return int(ExitCode.FAILED)
    code = result if isinstance(result, int) else 0
    return code


def broken_pipe(error: BrokenPipeError, *, as_json: bool) -> int:
    """The exit code for a broken pipe: stdout's reader went away (`drkit ... | head`), or a
    pipe to a child broke, which is the job failing and is said so."""
    if not stdout_reader_gone():
        report_internal_error(error, as_json=as_json)
        return int(ExitCode.FAILED)
    # what the command would have said next has no reader, and its outcome is unknown here:
    # never 0, so that a pipeline under pipefail does not pass
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's exit flush must not fail again
    return int(ExitCode.OUTPUT_CLOSED)


def stdout_reader_gone() -> bool:
    """True when standard output is a pipe or socket whose reading end is closed."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no usable stdout at all: nobody reads
        return True


#: Modules of database drivers whose errors are the server's word, not a bug in drkit.
DATABASE_DRIVERS = ("pymysql", "psycopg", "sqlite3")


def database_server_error(error: Exception) -> SourceError | None:
    """A database driver's error that no layer turned into a drkit error (a server that
    failed mid-statement, lost a temporary file, went away): one line with the server's
    own words, not "a bug in drkit"; None for anything else."""
    module = type(error).__module__ or ""
    if module.split(".")[0] not in DATABASE_DRIVERS:
        return None
    arguments = error.args
    text = str(arguments[1]) if len(arguments) > 1 else str(error)
    first_line = (text.strip().splitlines() or [type(error).__name__])[0]
    return SourceError(
        f"the database server failed: {first_line}",
        hint="check the server's log and that it is healthy, then run the command again",
    )


def report_internal_error(error: Exception, *, as_json: bool) -> None:
    """A bug: one line and how to get the traceback (it is logged at debug level, -vv)."""
    logging.getLogger("drkit").debug("internal error", exc_info=True)
    first_line = (str(error).splitlines() or [""])[0]
    message = f"internal error: {type(error).__name__}: {first_line}"
    click.echo(f"drkit: {message}", err=True)
    click.echo(
        "  hint: this is a bug in drkit; run again with -vv for the traceback and report it",
        err=True,
    )
    if as_json:
        echo_json(error_document("InternalError", message, int(ExitCode.FAILED)))


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_main() -> None:  # pragma: no cover - console script shim
    # SIGTERM (Kubernetes, systemd, timeout) takes the same orderly path as Ctrl-C: children
    # stopped, sandboxes torn down, runs recorded as interrupted. As PID 1 in a container,
    # Python would otherwise ignore it.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    sys.exit(main())
