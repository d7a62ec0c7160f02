"""Old snapshots stay restorable (DESIGN promise 11): snapshots written by release 0.1.0, with
its plain-JSON manifests, in a filesystem store and a restic repository (committed under
tests/fixtures/release-0.1.0), still list, verify and restore, with a warning that their
manifest is not authenticated; and they keep doing so once sealed snapshots sit beside them."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ..faults.helpers import json_output, run_drkit, write_plan
from ..stores.conftest import cheapen_restic_key

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release-0.1.0"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURE / "expected.json").read_text())
OLDER, NEWER = sorted(EXPECTED)


@dataclass
class Legacy:
    tmp: Path
    plan: Path
    catalog: str
    server: str
    config_path: str


def original_config_path() -> str:
    """Where the fixture's config folder was (its files' archive names say)."""
    manifest = FIXTURE / "stores/fs/legacy-api/snapshots" / OLDER / "manifest.json"
    for artifact in json.loads(manifest.read_text())["artifacts"]:
        if artifact["source"] == "app-config":
            [name] = artifact["fingerprint"]["files"]
            return "/" + name.rsplit("/", 1)[0]
    raise AssertionError("the fixture has no config artifact")


@pytest.fixture
def legacy(
    tmp_path: Path, postgres_server: str, restic_binary: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Legacy]:
    shutil.copytree(FIXTURE, tmp_path / "fixture")
    base = tmp_path / "fixture"
    (base / "keys" / "primary.key").chmod(0o600)
    # the same repository key, with cheap scrypt parameters: restic then opens it in
    # milliseconds instead of half a second per command (tests/stores/conftest.py)
    password = (base / "restic-password").read_text().rstrip("\n")
    [restic_key] = (base / "stores/restic/keys").iterdir()
    cheap = cheapen_restic_key(restic_key.read_bytes(), password)
    (restic_key.parent / hashlib.sha256(cheap).hexdigest()).write_bytes(cheap)
    restic_key.unlink()
    monkeypatch.setenv("RESTIC_CACHE_DIR", str(tmp_path / "restic-cache"))
    source_database = f"drkit_legacy_{secrets.token_hex(4)}"
    document = {
        "version": 1,
        "name": "legacy-api",
        "sources": [
            {"name": "app-db", "type": "sqlite", "path": str(tmp_path / "app.db")},
            {"name": "app-config", "type": "files", "paths": [original_config_path()]},
            {
                "name": "payments-db",
                "type": "postgresql",
                "url": f"{postgres_server}/{source_database}",
            },
        ],
        "keys": [
            {"name": "primary", "type": "keyfile", "path": str(base / "keys/primary.key")},
            {
                "name": "break-glass",
                "type": "passphrase",
                "passphrase": f"file:{base / 'passphrase'}",
            },
        ],
        "stores": [
            {"name": "fs", "type": "filesystem", "path": str(base / "stores/fs"), "region": "a"},
            {
                "name": "restic",
                "type": "restic",
                "repository": str(base / "stores/restic"),
                "password": f"file:{base / 'restic-password'}",
                "region": "b",
            },
        ],
        "copies": {"min_stores": 2, "min_regions": 2},
    }
    plan = write_plan(tmp_path / "plan.yaml", document)
    yield Legacy(tmp_path, plan, f"sqlite:///{tmp_path / 'catalog.db'}", postgres_server, "")
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        rows = connection.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'drkit_legacy_%%'"
        ).fetchall()
        for (name,) in rows:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM orders").fetchone()[0])
    finally:
        connection.close()


def payments(server: str, database: str) -> int:
    with psycopg.connect(f"{server}/{database}") as connection:
        row = connection.execute("SELECT count(*) FROM payments").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.restic
@pytest.mark.postgres
def test_old_snapshots_list_from_each_store_marked_unauthenticated(legacy: Legacy) -> None:
    for store in ("fs", "restic"):
        listed = run_drkit(legacy.catalog, "snapshots", "--store", store, str(legacy.plan))
        assert listed.returncode == 0, listed.stderr
        header, *lines = listed.stdout.splitlines()
        assert header.startswith("ID ")
        assert [line.split()[0] for line in lines] == [NEWER, OLDER], listed.stdout
        assert all("0.1.0 manifest, not authenticated" in line for line in lines)


@pytest.mark.restic
@pytest.mark.postgres
def test_old_snapshots_verify_in_every_store(legacy: Legacy) -> None:
    checked = run_drkit(legacy.catalog, "verify", "--all", "--json", str(legacy.plan))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    copies = json_output(checked)["copies"]
    assert {(c["snapshot_id"], c["store"]) for c in copies} == {
        (snapshot, store) for snapshot in EXPECTED for store in ("fs", "restic")
    }
    assert all(c["ok"] and c["objects"] == 3 and not c["manifest_authenticated"] for c in copies)


def restore(legacy: Legacy, snapshot: str, store: str, name: str) -> tuple[Any, Path, str]:
    target = legacy.tmp / name
    database = f"drkit_legacy_{secrets.token_hex(4)}"
    completed = run_drkit(
        legacy.catalog, "restore", "--yes", "--json", str(legacy.plan), "--snapshot", snapshot,
        "--store", store, "--to", f"app-db={target / 'app.db'}",
        "--to", f"app-config={target / 'config'}", "--to", f"payments-db={database}",
    )  # fmt: skip
    return completed, target, database


@pytest.mark.restic
@pytest.mark.postgres
@pytest.mark.parametrize("store", ["fs", "restic"])
def test_old_snapshots_restore_exactly_what_they_held(legacy: Legacy, store: str) -> None:
    for snapshot, facts in EXPECTED.items():
        completed, target, database = restore(legacy, snapshot, store, f"{store}-{snapshot}")
        assert completed.returncode == 0, completed.stdout + completed.stderr
        document = json_output(completed)
        assert document["manifest_authenticated"] is False
        assert all(item["verified"] and item["store"] == store for item in document["items"])
        assert count(target / "app.db") == facts["orders"]
        [app_yaml] = (target / "config").rglob("app.yaml")
        assert app_yaml.read_text() == facts["config"]
        assert payments(legacy.server, database) == facts["payments"]


@pytest.mark.restic
@pytest.mark.postgres
def test_old_snapshots_stay_restorable_beside_sealed_ones(legacy: Legacy) -> None:
    """A new backup writes a sealed manifest into the same stores; the old plain manifests
    still open (the downgrade guard only refuses plain manifests newer than a sealed one)."""
    with psycopg.connect(f"{legacy.server}/postgres", autocommit=True) as connection:
        name = next(
            source["url"].rsplit("/", 1)[1]
            for source in _plan_sources(legacy.plan)
            if source["type"] == "postgresql"
        )
        connection.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(f"{legacy.server}/{name}", autocommit=True) as connection:
        connection.execute("CREATE TABLE payments (id int)")
    sqlite3.connect(legacy.tmp / "app.db").executescript(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY); INSERT INTO orders VALUES (1);"
    )
    Path(original_config_path()).mkdir(parents=True, exist_ok=True)
    try:
        (Path(original_config_path()) / "app.yaml").write_text("generation: 3\n")
        done = json_output(run_drkit(legacy.catalog, "backup", "--json", str(legacy.plan)))
    finally:
        shutil.rmtree(Path(original_config_path()).parent, ignore_errors=True)
    assert done["outcome"] == "ok", done
    listed = run_drkit(legacy.catalog, "snapshots", "--store", "restic", str(legacy.plan))
    lines = listed.stdout.splitlines()[1:]
    assert lines[0].startswith(done["snapshot_id"]) and "not authenticated" not in lines[0]
    completed, target, _ = restore(legacy, OLDER, "restic", "after-sealed")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert count(target / "app.db") == EXPECTED[OLDER]["orders"]


def _plan_sources(plan: Path) -> list[dict[str, Any]]:
    import yaml

    sources: list[dict[str, Any]] = yaml.safe_load(plan.read_text())["sources"]
    return sources


@pytest.mark.restic
@pytest.mark.postgres
def test_old_snapshots_show_their_contents_and_diff_saying_they_lack_content_digests(
    legacy: Legacy,
) -> None:
    shown = run_drkit(legacy.catalog, "info", "--store", "restic", str(legacy.plan), OLDER)
    assert shown.returncode == 0, shown.stderr
    assert "release 0.1.0 format, NOT authenticated, written by drkit 0.1.0" in shown.stdout
    assert "table orders  50 rows" in shown.stdout
    compared = run_drkit(
        legacy.catalog, "diff", "--json", "--store", "fs", str(legacy.plan), OLDER, NEWER
    )
    assert compared.returncode == 0, compared.stderr
    diff = json_output(compared)
    by_source = {source["source"]: source for source in diff["sources"]}
    [orders] = by_source["app-db"]["changes"]
    assert (orders["name"], orders["before"], orders["after"]) == ("orders", 50, 100)
    assert by_source["app-config"]["status"] == "changed"
    assert by_source["payments-db"]["status"] == "unchanged"
    lacking = [note for note in diff["notes"] if "no per-table content digests" in note]
    assert len(lacking) == 2 and all("written by drkit 0.1.0" in note for note in lacking)


@pytest.mark.restic
@pytest.mark.postgres
def test_an_old_sqlite_snapshot_forced_over_a_file_keeps_that_files_mode_and_owner(
    legacy: Legacy,
) -> None:
    """0.1.0 did not record a database file's mode and owner: restored with --force (loaded
    beside the file, then swapped in), the file keeps those of the file it replaces."""
    path = legacy.tmp / "app.db"
    sqlite3.connect(path).executescript("CREATE TABLE orders (id INTEGER PRIMARY KEY);")
    path.chmod(0o640)
    owner = (12345, 12346) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    os.chown(path, *owner)
    completed = run_drkit(
        legacy.catalog, "restore", "--yes", "--force", "--drop-previous", str(legacy.plan),
        "--snapshot", OLDER, "--store", "fs", "--source", "app-db",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert count(path) == EXPECTED[OLDER]["orders"]
    status = path.stat()
    assert (stat.S_IMODE(status.st_mode), status.st_uid, status.st_gid) == (0o640, *owner)
    assert not list(legacy.tmp.glob("app.db_drkit_*"))
