"""A reader that goes away (``drkit ... | head``) ends drkit quietly, but never with 0: the
job's outcome is unknown once its output has no reader. A broken pipe to a child process is
the job failing, not the terminal's business."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import drkit.cli
from drkit.cli import main
from drkit.errors import ExitCode


def test_a_closed_stdout_ends_drkit_with_141_and_no_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before drkit writes a byte
    try:
        finished = subprocess.run(
            [sys.executable, "-m", "drkit", "--help"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert finished.returncode == ExitCode.OUTPUT_CLOSED == 141
    assert finished.stderr == ""


def test_a_broken_pipe_to_a_child_is_a_failure_said_on_stderr_not_a_closed_stdout(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def pg_restore_died(*args: object, **kwargs: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    # inside a command, as click sees it (it turns the error into a silent exit 1)
    monkeypatch.setattr(drkit.cli.cli, "invoke", pg_restore_died)
    assert main(["status", "plan.yaml"]) == ExitCode.FAILED
    err = capfd.readouterr().err
    assert "Broken pipe" in err and "Traceback" not in err
