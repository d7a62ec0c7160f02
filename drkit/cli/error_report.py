"""How a failed command reports itself: one line on stderr saying what went wrong, a hint,
the runbook to read; and with ``--json``, the same as a JSON object on stdout, so a script
reading stdout always gets a document."""

from __future__ import annotations

from collections.abc import Sequence

import click

from drkit.cli.context import echo_json
from drkit.errors import DrkitError, ExitCode, PlanError, UsageError


def wants_json(args: Sequence[str]) -> bool:
    """True when the command line asks for ``--json`` (before any ``--``)."""
    words = list(args)
    return "--json" in (words[: words.index("--")] if "--" in words else words)


def command_path(group: click.Group, args: Sequence[str]) -> str:
    """The command the arguments name, for hints: ``drkit restore``, ``drkit plan validate``."""
    words = ["drkit"]
    command: click.Command = group
    context = click.Context(group)
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            break
        if token.startswith("-"):
            if "=" not in token and token in _options_with_values(command):
                next(tokens, None)
            continue
        if not isinstance(command, click.Group):
            break
        subcommand = command.get_command(context, token)
        if subcommand is None:
            break
        words.append(token)
        command = subcommand
    return " ".join(words)


def _options_with_values(command: click.Command) -> set[str]:
    return {
        name
        for parameter in command.params
        if isinstance(parameter, click.Option) and not parameter.is_flag and not parameter.count
        for name in parameter.opts
    }


def hint_for(error: DrkitError, command: str) -> str:
    """The error's hint; a usage error without its own hint points at the command's help."""
    if isinstance(error, UsageError) and error.hint == UsageError.default_hint:
        return f"see `{command} --help`"
    return error.hint


def report_error(error: DrkitError, *, command: str, as_json: bool) -> None:
    """stderr: the problems (plan errors), the message, a hint and the runbook; stdout (with
    --json): the same as one JSON object."""
    hint = hint_for(error, command)
    problems = error.problems if isinstance(error, PlanError) else []
    for problem in problems:
        click.echo(problem, err=True)
    click.echo(f"drkit: error: {error.message}", err=True)
    if hint:
        click.echo(f"  hint: {hint}", err=True)
    if error.reference:
        click.echo(f"  see:  {error.reference}", err=True)
    if as_json:
        document = error_document(type(error).__name__, error.message, int(error.exit_code))
        document["error"] |= {"hint": hint or None, "see": error.reference or None}
        if problems:
            document["error"]["problems"] = problems
        echo_json(document)


def error_document(kind: str, message: str, exit_code: int) -> dict[str, dict[str, object]]:
    """``{"error": {...}}``: what a script reads from stdout when a --json command fails."""
    return {"error": {"type": kind, "message": message, "exit_code": exit_code}}


def report_usage_error(error: click.ClickException, *, as_json: bool) -> None:
    """click's own usage errors (a missing argument, an unknown option)."""
    error.show()
    if as_json:
        echo_json(error_document("UsageError", error.format_message(), int(ExitCode.USAGE)))
