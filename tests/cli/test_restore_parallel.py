"""`drkit restore --parallel N` through the CLI: each source's own phase times in --json, the
restore's phases adding up to no more than it took, and N checked."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from drkit.cli import main
from drkit.errors import ExitCode

from .conftest import two_store_setup


def test_parallel_restore_reports_each_sources_phases_and_restores_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = two_store_setup(tmp_path)
    assert main(["--catalog", setup["url"], "backup", setup["plan"]]) == 0
    capsys.readouterr()
    database, config = tmp_path / "restored.db", tmp_path / "restored-config"
    arguments = ["--catalog", setup["url"], "restore", "--yes", "--json", "--parallel", "2"]
    arguments += ["--to", f"app-db={database}", "--to", f"app-config={config}", setup["plan"]]
    started = time.monotonic()
    assert main(arguments) == 0
    took = time.monotonic() - started
    document = json.loads(capsys.readouterr().out)
    assert document["outcome"] == "ok"
    for item in document["items"]:
        assert set(item["phases"]) == {"fetch", "decrypt", "load", "verify"}, item
        assert item["verified"]
    assert sum(document["phases"].values()) <= took
    connection = sqlite3.connect(database)
    assert connection.execute("SELECT count(*) FROM orders").fetchone()[0] == 300
    connection.close()
    assert any(path.is_file() for path in config.rglob("*"))


def test_parallel_zero_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup = two_store_setup(tmp_path)
    arguments = ["--catalog", setup["url"], "restore", "--parallel", "0", setup["plan"]]
    assert main(arguments) == ExitCode.USAGE
    assert "--parallel" in capsys.readouterr().err
