"""Start-up cost: a command imports what it uses and nothing else, so `drkit --help` lists the
commands without importing any of them; and progress off a terminal."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import click
import pytest

from drkit.cli import COMMANDS, SUMMARIES, cli, progress


def imported_after(code: str) -> set[str]:
    """Modules a fresh interpreter holds after running ``code`` (which prints nothing)."""
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(output.splitlines()[-1]))


def test_every_command_has_the_summary_its_own_help_gives() -> None:
    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert command is not None
        assert SUMMARIES.get(name) == command.get_short_help_str(limit=10_000), name


def test_help_lists_the_commands_without_importing_them() -> None:
    modules = imported_after(
        "import contextlib, io\n"
        "from drkit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    main(['--help'])\n"
        "assert 'restore' in out.getvalue() and 'Snapshot every source' in out.getvalue()"
    )
    commands = {module for module, _ in COMMANDS.values()}
    assert not commands & modules
    assert not {"sqlalchemy", "pydantic", "psycopg", "boto3", "cryptography"} & modules


def test_off_a_terminal_progress_is_a_log_line_per_source_now_and_then(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(progress, "LOG_INTERVAL_SECONDS", 0.05)
    with caplog.at_level(logging.INFO, logger="drkit.progress"):
        with progress.phase_progress(enabled=True, what="restore") as update:
            assert update is not None
            update("orders-db", "decrypt", 512 * 1024, 1024 * 1024)
            update("app-config", "load", 0, 0)
            time.sleep(0.3)
        lines = [record.getMessage() for record in caplog.records]
    assert any(
        line.startswith("restore orders-db: decrypt, 512.0 KiB of 1.0 MiB at ") and "left" in line
        for line in lines
    ), lines
    assert any(line.startswith("restore app-config: load (") for line in lines), lines
    caplog.clear()
    time.sleep(0.2)
    assert not caplog.records  # the reporter stopped with the block


def test_progress_is_off_for_json_and_quiet() -> None:
    with progress.phase_progress(enabled=False, what="restore") as update:
        assert update is None
