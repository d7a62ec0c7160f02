"""`drkit restore`, `snapshots`, `verify`, `catalog rebuild` through the CLI: exit codes,
--dry-run, refusing non-empty targets, working without the catalog."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from drkit.cli import main
from drkit.errors import ExitCode

from .conftest import two_store_setup


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    return two_store_setup(tmp_path)


def run(setup: dict[str, Any], *args: str) -> int:
    return main(["--catalog", setup["url"], *args])


def test_backup_then_snapshots_json(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, "backup", "--json", setup["plan"]) == 0
    backed_up = json.loads(capsys.readouterr().out)
    assert backed_up["outcome"] == "ok"
    assert run(setup, "snapshots", "--json", setup["plan"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["snapshot_id"] == backed_up["snapshot_id"] and listed["stores"] == [
        "east",
        "west",
    ]


def test_restore_over_the_live_database_is_refused_with_exit_9(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, "backup", setup["plan"]) == 0
    capsys.readouterr()
    assert run(setup, "restore", "--yes", setup["plan"]) == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert "refusing to overwrite non-empty target" in err and "hint: add --force" in err
    assert "Traceback" not in err


def test_dry_run_changes_nothing_and_shows_the_plan(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, "backup", setup["plan"]) == 0
    before = tree_digest(setup["tmp"])
    capsys.readouterr()
    target = setup["tmp"] / "elsewhere.db"
    assert (
        run(setup, "restore", "--dry-run", "--force", "--to", f"app-db={target}", setup["plan"])
        == 0
    )
    out = capsys.readouterr().out
    assert "dry run: nothing was changed" in out and str(target) in out and "REPLACES" in out
    assert tree_digest(setup["tmp"]) == before
    assert not target.exists()


def test_restore_elsewhere_then_force_replaces_and_says_what(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, "backup", setup["plan"]) == 0
    target = setup["tmp"] / "restored.db"
    assert (
        run(
            setup,
            "restore",
            "--yes",
            "--source",
            "app-db",
            "--to",
            f"app-db={target}",
            setup["plan"],
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "restored snapshot" in out and "locate" in out and "verified" in out
    connection = sqlite3.connect(target)
    assert connection.execute("SELECT count(*) FROM orders").fetchone()[0] == 300
    connection.close()
    assert (
        run(
            setup,
            "restore",
            "--yes",
            "--force",
            "--source",
            "app-db",
            "--to",
            f"app-db={target}",
            setup["plan"],
        )
        == 0
    )
    assert "REPLACES" in capsys.readouterr().out


def test_catalog_deleted_restore_works_from_stores_and_rebuild_restores_the_list(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, "backup", setup["plan"]) == 0
    assert run(setup, "backup", setup["plan"]) == 0
    capsys.readouterr()
    assert run(setup, "snapshots", "--json", setup["plan"]) == 0
    before = [s["snapshot_id"] for s in json.loads(capsys.readouterr().out)]
    setup["catalog"].unlink()
    target = setup["tmp"] / "from-store.db"
    assert (
        run(
            setup,
            "restore",
            "--yes",
            "--source",
            "app-db",
            "--to",
            f"app-db={target}",
            setup["plan"],
        )
        == 0
    )
    assert target.exists()
    setup["catalog"].unlink()
    assert run(setup, "catalog", "rebuild", "--store", "west", setup["plan"]) == 0
    capsys.readouterr()
    assert run(setup, "snapshots", "--json", setup["plan"]) == 0
    assert [s["snapshot_id"] for s in json.loads(capsys.readouterr().out)] == before


def test_verify_exit_7_names_the_corrupt_store(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, "backup", setup["plan"]) == 0
    victim = next((setup["tmp"] / "east").rglob("app-config.drkit"))
    data = bytearray(victim.read_bytes())
    data[40] ^= 1
    victim.write_bytes(bytes(data))
    capsys.readouterr()
    assert run(setup, "verify", setup["plan"]) == ExitCode.INTEGRITY
    out = capsys.readouterr().out
    assert "east: FAILED" in out and "west: ok" in out


def test_unknown_snapshot_is_exit_10(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, "backup", setup["plan"]) == 0
    assert (
        run(
            setup,
            "restore",
            "--dry-run",
            "--snapshot",
            "20200101T000000.000Z-000000",
            setup["plan"],
        )
        == ExitCode.NOT_FOUND
    )
    assert "hint:" in capsys.readouterr().err


def test_before_with_nothing_older_is_exit_10(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, "backup", setup["plan"]) == 0
    assert (
        run(setup, "restore", "--dry-run", "--before", "2020-01-01T00:00:00Z", setup["plan"])
        == ExitCode.NOT_FOUND
    )
    assert "no complete snapshot taken before" in capsys.readouterr().err


def test_the_demo_command_runs_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRKIT_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("DRKIT_HOME", str(tmp_path / "home"))  # its default catalog, not ~'s
    monkeypatch.delenv("DRKIT_CATALOG", raising=False)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "measured RTO" in out and "RPO" in out
    assert (tmp_path / "demo" / "report.html").exists()
