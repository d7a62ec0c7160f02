"""The command line: thin click commands that parse, load the plan, call one action, and render
text for people or ``--json`` for scripts. This package is the only place that maps errors to
exit codes (``drkit.errors.ExitCode``).
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys

import click

from drkit import __version__
from drkit.cli.context import Context, configure_logging
from drkit.errors import DrkitError, ExitCode, PlanError

EPILOG = """\b
Examples:
  drkit plan validate plans/*.yaml
  drkit backup plans/payments.yaml
  drkit restore plans/payments.yaml --dry-run
  drkit drill plans/payments.yaml && drkit status plans/
Exit codes: docs/exit-codes.md (0 ok, 1 failed, 2 usage or plan error, 3 degraded, ...).
"""


#: command name -> (module, attribute). Commands are imported when invoked, so `drkit backup`
#: does not pay for the report, monitoring or Kubernetes code (start-up time, memory).
COMMANDS = {
    "plan": ("drkit.cli.plan", "plan_group"),
    "keys": ("drkit.cli.keys", "keys_group"),
    "backup": ("drkit.cli.backup", "backup_command"),
    "snapshots": ("drkit.cli.backup", "snapshots_command"),
    "restore": ("drkit.cli.restore", "restore_command"),
    "verify": ("drkit.cli.verify", "verify_command"),
    "prune": ("drkit.cli.prune", "prune_command"),
    "drill": ("drkit.cli.drill", "drill_command"),
    "status": ("drkit.cli.report", "status_command"),
    "report": ("drkit.cli.report", "report_command"),
    "run": ("drkit.cli.run", "run_command"),
    "metrics": ("drkit.cli.metrics", "metrics_command"),
    "k8s": ("drkit.cli.k8s", "k8s_group"),
    "catalog": ("drkit.cli.catalog", "catalog_group"),
    "demo": ("drkit.cli.demo", "demo_command"),
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


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drkit")
@click.option(
    "--catalog",
    "catalog_url",
    envvar="DRKIT_CATALOG",
    metavar="URL",
    help="Catalog database (SQLAlchemy URL). Default: $DRKIT_HOME/catalog.db.",
)
@click.option("-v", "--verbose", count=True, help="More detail (-vv for debug logs).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and results.")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "text", "json"]),
    default="auto",
    show_default=True,
    help="Log lines as text (TTY) or JSON lines (otherwise).",
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


def render_error(error: DrkitError) -> None:
    """One line saying what went wrong, then what to do about it."""
    if isinstance(error, PlanError) and error.problems:
        for problem in error.problems:
            click.echo(problem, err=True)
    click.echo(f"drkit: error: {error.message}", err=True)
    if error.hint:
        click.echo(f"  hint: {error.hint}", err=True)
    if error.reference:
        click.echo(f"  see:  {error.reference}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `drkit` console script; returns the exit code."""
    try:
        result = cli.main(args=argv, prog_name="drkit", standalone_mode=False)
    except DrkitError as error:
        render_error(error)
        return int(error.exit_code)
    except click.exceptions.Abort:
        click.echo("drkit: interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except click.ClickException as error:
        error.show()
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        click.echo("drkit: interrupted; nothing half-written is marked complete", err=True)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as error:
        logging.getLogger("drkit").debug("internal error", exc_info=True)
        first_line = (str(error).splitlines() or [""])[0]
        click.echo(f"drkit: internal error: {type(error).__name__}: {first_line}", err=True)
        click.echo(
            "  hint: this is a bug in drkit; run again with -vv for the traceback and report it",
            err=True,
        )
        return int(ExitCode.FAILED)
    code = result if isinstance(result, int) else 0
    return code


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_main() -> None:  # pragma: no cover - console script shim
    # SIGTERM (Kubernetes, systemd, timeout) takes the same orderly path as Ctrl-C: children
    # stopped, sandboxes torn down, runs recorded as interrupted. As PID 1 in a container,
    # Python would otherwise ignore it.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    sys.exit(main())
