"""`drkit snapshots`, `drkit info`, `drkit diff` through the CLI on a real SQLite database and
config folder in two filesystem stores: the table's header and columns (verify and drill state,
local times), one snapshot's contents from the catalog and from a store's sealed manifest, what
changed between two snapshots, and snapshot names (latest~1, prefixes)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from drkit.actions.changes import has_content_digests
from drkit.cli import main
from drkit.errors import ExitCode

from .conftest import two_store_setup

CHECKS = {"checks": [{"type": "fingerprint"}]}


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    return two_store_setup(tmp_path, drill=CHECKS)


def run(setup: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Exit code and standard output of one drkit command."""
    capsys.readouterr()
    code = main(["--catalog", setup["url"], *args])
    return code, capsys.readouterr().out


def backup(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    code, out = run(setup, capsys, "backup", "--json", setup["plan"])
    assert code == 0
    return str(json.loads(out)["snapshot_id"])


def change_the_data(setup: dict[str, Any]) -> None:
    """What a bad deploy might do: add orders, drop a table, add one, rewrite a config file,
    add another, remove a third."""
    connection = sqlite3.connect(setup["database"])
    connection.executescript(
        "INSERT INTO orders (note, total) SELECT note, total FROM orders LIMIT 20;"
        "DROP TABLE customers;"
        "CREATE TABLE audit (id INTEGER PRIMARY KEY); INSERT INTO audit VALUES (1), (2);"
    )
    connection.commit()
    connection.close()
    config: Path = setup["config"]
    (config / "app.yaml").write_text("secret_marker: rewritten\n")
    (config / "conf.d" / "new.yaml").write_text("new: true\n")
    (config / "conf.d" / "features.yaml").unlink()


# --- drkit snapshots ---------------------------------------------------------------------------


def test_snapshots_is_a_table_with_a_header_sizes_sources_and_verify_and_drill_state(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], new_york: None
) -> None:
    older = backup(setup, capsys)
    newer = backup(setup, capsys)
    assert run(setup, capsys, "verify", "--snapshot", newer, setup["plan"])[0] == 0
    assert run(setup, capsys, "drill", setup["plan"])[0] == 0
    code, out = run(setup, capsys, "snapshots", setup["plan"])
    assert code == 0
    header, first, second = out.splitlines()
    assert header.split() == [
        "ID", "TAKEN", "STATUS", "SIZE", "SOURCES", "STORES", "VERIFIED", "DRILLED"
    ]  # fmt: skip
    assert first.startswith(newer) and second.startswith(older)
    assert "app-db,app-config" in first and "east,west" in first
    assert first.split()[-2:] == ["2/2", "ok"] and " ok 2/2 " in first
    assert second.split()[-2:] == ["never", "never"]
    # the time column is this machine's zone, named (New York: EST or EDT)
    assert (" EST " in first) or (" EDT " in first)
    assert "KiB" in first


def test_snapshots_json_has_sizes_sources_verifications_drills_and_keys(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot_id = backup(setup, capsys)
    assert run(setup, capsys, "drill", setup["plan"])[0] == 0
    code, out = run(setup, capsys, "snapshots", "--json", setup["plan"])
    [listed] = json.loads(out)
    assert code == 0 and listed["snapshot_id"] == snapshot_id
    assert listed["sources"] == ["app-db", "app-config"]
    assert listed["plaintext_bytes"] > 0 and listed["keys"] == ["primary"]
    assert [v["store"] for v in listed["verified"]] == ["east", "west"]
    assert all(v["verify_ok"] is None for v in listed["verified"])
    [drilled] = listed["drills"]
    assert drilled["outcome"] == "ok" and drilled["store"] == "east"


def test_without_key_from_the_catalog_lists_only_snapshots_lacking_that_key(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    backup(setup, capsys)
    assert json.loads(run(setup, capsys, "snapshots", "--json", setup["plan"])[1])
    code, out = run(setup, capsys, "snapshots", "--without-key", "primary", "--json", setup["plan"])
    assert code == 0 and json.loads(out) == []
    code, out = run(setup, capsys, "snapshots", "--without-key", "retired", "--json", setup["plan"])
    assert code == 0 and len(json.loads(out)) == 1


def test_snapshots_from_a_store_alone_shows_sizes_and_sources_from_its_manifests(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot_id = backup(setup, capsys)
    setup["catalog"].unlink()
    code, out = run(setup, capsys, "snapshots", "--store", "west", setup["plan"])
    assert code == 0
    [row] = out.splitlines()[1:]
    assert row.startswith(snapshot_id) and "complete" in row and "app-db,app-config" in row
    assert "KiB" in row


def test_without_a_catalog_verify_and_drill_state_is_unknown_not_never(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    backup(setup, capsys)
    assert run(setup, capsys, "drill", setup["plan"])[0] == 0
    setup["catalog"].write_bytes(b"not a database")
    code, out = run(setup, capsys, "snapshots", setup["plan"])
    assert code == 0
    [row] = out.splitlines()[1:]
    assert row.split()[-2:] == ["?", "?"] and " listed " in row
    code, out = run(setup, capsys, "snapshots", "--json", setup["plan"])
    [listed] = json.loads(out)
    assert listed["verified"] is None and listed["drills"] is None


# --- drkit info --------------------------------------------------------------------------------


def test_info_from_the_catalog_shows_tables_files_keys_stores_and_drills(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot_id = backup(setup, capsys)
    assert run(setup, capsys, "drill", setup["plan"])[0] == 0
    code, out = run(setup, capsys, "info", setup["plan"], "latest")
    assert code == 0
    assert out.startswith(f"snapshot {snapshot_id} of plan test-api")
    assert "app-db (sqlite): sqlite, zstd" in out and "2 tables" in out
    assert "table orders  300 rows" in out and "table customers  20 rows" in out
    assert "app-config (files): tar-pax" in out and "3 files" in out
    assert "/config/app.yaml" in out
    assert "keys      primary" in out
    assert "not opened here" in out
    lines = out.splitlines()
    assert any(line.split()[:2] == ["east", "complete"] for line in lines)
    assert any(line.split()[3:5] == ["east", "ok"] for line in lines[lines.index("drills") :])


def test_info_from_a_store_opens_and_authenticates_its_sealed_manifest(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot_id = backup(setup, capsys)
    code, out = run(setup, capsys, "info", "--json", "--store", "west", setup["plan"], "latest")
    info = json.loads(out)
    assert code == 0 and info["snapshot_id"] == snapshot_id
    assert info["origin"] == "store west" and info["authenticated"] is True
    assert info["drkit_version"]
    [database] = [a for a in info["artifacts"] if a["source"] == "app-db"]
    assert database["fingerprint"]["tables"]["orders"] == 300
    assert database["keys"] == ["primary"] and database["tool_versions"]


def test_info_works_when_the_catalog_is_gone(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot_id = backup(setup, capsys)
    setup["catalog"].unlink()
    code, out = run(setup, capsys, "info", setup["plan"], snapshot_id[:15])
    assert code == 0 and f"snapshot {snapshot_id}" in out
    assert "from store east: sealed and authenticated" in out
    code, out = run(setup, capsys, "info", "--json", setup["plan"], snapshot_id[:15])
    copies = {copy["store"]: copy["status"] for copy in json.loads(out)["stores"]}
    assert copies == {"east": "complete", "west": "listed"}  # west's manifest was not opened


def test_info_of_a_tampered_store_manifest_is_an_integrity_error(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    backup(setup, capsys)
    [manifest] = (tmp_path / "west").rglob("manifest*")
    data = bytearray(manifest.read_bytes())
    data[-5] ^= 1
    manifest.write_bytes(bytes(data))
    assert run(setup, capsys, "info", "--store", "west", setup["plan"], "latest")[0] == (
        ExitCode.INTEGRITY
    )


def test_snapshot_names_that_match_nothing_or_several_have_distinct_exit_codes(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    first = backup(setup, capsys)
    backup(setup, capsys)
    assert run(setup, capsys, "info", setup["plan"], "latest~2")[0] == ExitCode.NOT_FOUND
    assert run(setup, capsys, "info", setup["plan"], "19990101")[0] == ExitCode.NOT_FOUND
    common = first[:8]  # both were taken today
    capsys.readouterr()
    assert main(["--catalog", setup["url"], "info", setup["plan"], common]) == ExitCode.USAGE
    assert "ambiguous" in capsys.readouterr().err
    assert run(setup, capsys, "info", setup["plan"], "latest~1")[1].startswith(f"snapshot {first}")


# --- drkit diff --------------------------------------------------------------------------------


def test_diff_names_changed_added_and_removed_tables_and_files(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    before = backup(setup, capsys)
    change_the_data(setup)
    after = backup(setup, capsys)
    code, out = run(setup, capsys, "diff", setup["plan"], "latest~1", "latest")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"from {before}") and lines[1].startswith(f"  to {after}")
    assert "app-db (sqlite): changed" in lines
    assert any(line.startswith("  ~ table orders: rows 300 -> 320") for line in lines)
    assert "  + table audit: 2 rows" in lines
    assert "  - table customers: 20 rows" in lines
    assert "  ~ schema: changed" in lines
    assert "app-config (files): changed" in lines
    assert any(
        line.startswith("  ~ file ") and "app.yaml: content changed" in line for line in lines
    )
    assert any(line.startswith("  + file ") and line.endswith("conf.d/new.yaml") for line in lines)
    assert any(line.startswith("  - file ") and "features.yaml" in line for line in lines)


def test_diff_json_lists_every_change_and_says_whether_content_digests_were_recorded(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    backup(setup, capsys)
    change_the_data(setup)
    backup(setup, capsys)
    code, out = run(setup, capsys, "diff", "--json", setup["plan"], "latest~1", "latest")
    diff = json.loads(out)
    assert code == 0 and diff["changed"] is True
    database = next(s for s in diff["sources"] if s["source"] == "app-db")
    changes = {(c["section"], c["name"], c["change"]) for c in database["changes"]}
    assert {("tables", "orders", "changed"), ("tables", "audit", "added")} <= changes
    assert ("tables", "customers", "removed") in changes
    # whether this release's SQLite capture records content digests decides the plain note
    code, info = run(setup, capsys, "info", "--json", setup["plan"], "latest")
    fingerprint = next(a for a in json.loads(info)["artifacts"] if a["source"] == "app-db")
    recorded = has_content_digests(fingerprint["fingerprint"])
    assert database["content_digests"] == {"before": recorded, "after": recorded}
    said = any("no per-table content digests" in note for note in diff["notes"])
    assert said is (recorded is False)


def test_diff_of_unchanged_snapshots_says_so_and_exits_0(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    first = backup(setup, capsys)
    second = backup(setup, capsys)
    code, out = run(setup, capsys, "diff", setup["plan"], first, second)
    assert code == 0 and "no changes" in out
    assert "app-db (sqlite): unchanged (2 tables)" in out
    assert "app-config (files): unchanged (3 files)" in out


def test_diff_from_a_store_works_without_the_catalog(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    backup(setup, capsys)
    change_the_data(setup)
    backup(setup, capsys)
    setup["catalog"].unlink()
    code, out = run(
        setup, capsys, "diff", "--json", "--store", "east", setup["plan"], "latest~1", "latest"
    )
    diff = json.loads(out)
    assert code == 0 and diff["before"]["origin"] == "store east" and diff["changed"]
