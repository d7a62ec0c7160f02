"""The process gateway: a child sees only the allowlisted part of drkit's environment (never a
secret the plan refers to, whatever the variable's name), gets its secrets in private files
that are gone when it exits, refuses an argv holding a NUL byte, and a contained run leaves
no process behind, not even one that left its process group."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from drkit import execute
from drkit.errors import ToolError
from drkit.execute import Command, Process, run, run_contained
from drkit.leases import private_scratch
from drkit.leases.processes import is_process_alive
from drkit.secrets import Secret, SecretRef


def child_environment_of(command: Command) -> dict[str, str]:
    output = run(command).stdout.decode()
    return dict(line.split("=", 1) for line in output.split("\0") if "=" in line)


def test_a_child_inherits_the_allowlist_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRKIT_DB_PASSWORD", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    monkeypatch.setenv("LC_TIME", "C")
    environment = child_environment_of(Command(("env", "-0"), env={"PGAPPNAME": "drkit"}))
    assert "DRKIT_DB_PASSWORD" not in environment
    assert "AWS_SECRET_ACCESS_KEY" not in environment
    assert environment["PATH"] == os.environ["PATH"]
    assert environment["LC_TIME"] == "C"
    assert environment["PGAPPNAME"] == "drkit"
    assert set(environment) <= {
        *execute.INHERITED,
        "LC_TIME",
        "LC_ALL",
        "LC_CTYPE",
        "LC_MESSAGES",
        "PAGER",
        "TMPDIR",
        "PGAPPNAME",
    }


def test_a_resolved_secret_never_reaches_a_child_even_under_an_allowed_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANGUAGE", "plan-secret-value-9d2")
    monkeypatch.setenv("HTTPS_PROXY", "plan-secret-value-9d2")
    SecretRef("env:LANGUAGE").resolve()  # the plan refers to it, so it is a secret now
    command = Command(("env", "-0"), inherit=execute.NETWORK_SETTINGS)
    assert "plan-secret-value-9d2" not in child_environment_of(command).values()


def test_secrets_reach_a_child_in_a_private_file_removed_when_it_exits(tmp_path: Path) -> None:
    script = 'stat -c %a "$PGPASSFILE"; stat -c %a "$(dirname "$PGPASSFILE")"; cat "$PGPASSFILE"'
    command = Command(
        ("sh", "-c", script + '; echo "$PGPASSFILE"'),
        secret_files={"PGPASSFILE": Secret("*:*:*:*:hunter2\n")},
    )
    mode, folder_mode, content, path = run(command).stdout.decode().splitlines()
    assert (mode, folder_mode, content) == ("600", "700", "*:*:*:*:hunter2")
    assert not Path(path).exists() and not Path(path).parent.exists()
    assert "hunter2" not in command.describe()


def test_a_streaming_process_keeps_its_secret_file_until_it_finishes() -> None:
    command = Command(
        ("sh", "-c", 'cat "$RESTIC_PASSWORD_FILE"; echo; echo "$RESTIC_PASSWORD_FILE"'),
        secret_files={"RESTIC_PASSWORD_FILE": Secret("pw")},
    )
    with Process(command) as process:
        content, path = process.stdout.read().decode().split("\n", 1)
        assert content == "pw"
        process.finish()
    assert not Path(path.strip()).exists()


def test_a_nul_byte_in_argv_is_a_clear_error() -> None:
    with pytest.raises(ToolError, match="argument 1 of command echo holds a NUL byte"):
        run(Command(("echo", "a\0b")))


def test_children_carry_the_commands_scratch_marker_and_temporary_folder() -> None:
    with private_scratch() as scratch:
        environment = child_environment_of(Command(("env", "-0")))
    assert environment["TMPDIR"] == str(scratch)
    assert scratch.name == f"drkit-scratch-{environment['DRKIT_OWNER']}"
    assert not scratch.exists()


def test_a_contained_run_that_times_out_leaves_no_process_even_a_daemonized_one(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! >> {pids}; setsid sleep 60 & echo $! >> {pids}; sleep 60"
    started = time.monotonic()
    returncode, _ = run_contained(Command(("sh", "-c", script)), timeout=1)
    assert returncode is None
    assert time.monotonic() - started < 30  # did not wait for the children
    spawned = [int(pid) for pid in pids.read_text().split()]
    assert len(spawned) == 2 and not any(is_process_alive(pid) for pid in spawned)


def test_a_contained_run_ends_what_it_left_running_when_it_exits(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"setsid sleep 60 & echo $! > {pids}; echo oops >&2; exit 3"
    returncode, stderr = run_contained(Command(("sh", "-c", script)), timeout=30)
    assert (returncode, stderr.strip()) == (3, "oops")
    assert not is_process_alive(int(pids.read_text()))
