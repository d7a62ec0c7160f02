"""`drkit backup` says what a source left out without failing: a file that vanished while the
tree was read is a warning line on stderr and in --json, and the backup is ok."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drkit.cli import main

from .conftest import two_store_setup


def test_a_vanished_file_is_a_warning_of_an_ok_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = two_store_setup(tmp_path)
    rotated = setup["config"] / "app.log.1"
    rotated.write_text("old log\n")
    real_open = os.open

    def rotating_open(name: object, flags: int, *args: object, **kwargs: object) -> int:
        if name == rotated.name and kwargs.get("dir_fd") is not None and rotated.exists():
            rotated.unlink()  # logrotate, right between listing the folder and reading the file
        return real_open(name, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", rotating_open)
    assert main(["--catalog", setup["url"], "backup", "--json", setup["plan"]]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["outcome"] == "ok"
    assert document["warnings"] == [f"app-config: {rotated} vanished while being archived"]
    rotated.write_text("new log\n")
    assert main(["--catalog", setup["url"], "backup", setup["plan"]]) == 0
    assert (
        f"warning: app-config: {rotated} vanished while being archived" in capsys.readouterr().err
    )
