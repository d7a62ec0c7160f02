"""No secret leaks (DESIGN promise 8). backup, restore, drill and report run as CLI children
with distinctive secrets behind every kind of reference: a passphrase key, a PostgreSQL
password (trust auth ignores it, but drkit still hands it to pg_dump and psycopg), the sandbox
password, a restic password and S3 credentials. The values must appear in no process's argv
(watched in /proc while the commands run), no log line (-vv), no catalog row, no stored object
or manifest, and no report."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest

from ..stores.conftest import cheapen_restic_key
from .conftest import Setup, filesystem_stores, fill_postgres, make_setup
from .helpers import descendants, start_drkit

pytestmark = [pytest.mark.postgres, pytest.mark.restic, pytest.mark.s3, pytest.mark.slow]
TOKEN = secrets.token_hex(6)
SECRETS = {
    "DRKIT_FAULTS_PASSPHRASE": f"passphrase-{TOKEN}-Zq",
    "DRKIT_FAULTS_PG_PASSWORD": f"pg-password-{TOKEN}-Zq",
    "DRKIT_FAULTS_RESTIC_PASSWORD": f"restic-password-{TOKEN}-Zq",
    "DRKIT_FAULTS_S3_KEY_ID": f"AKIA{TOKEN.upper()}ZQ",
    "DRKIT_FAULTS_S3_SECRET": f"s3-secret-{TOKEN}-Zq",
}


def leaks(data: bytes | str) -> list[str]:
    """The secrets found in ``data``, raw or in the encodings a careless log might use."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    found = []
    for name, value in SECRETS.items():
        forms = {value, json.dumps(value)[1:-1], base64.b64encode(value.encode()).decode()}
        if any(form in text for form in forms):
            found.append(name)
    return found


def restic_repository(path: Path, password: str) -> str:
    """A new local restic repository for ``password``, with a cheap key (fast commands)."""
    subprocess.run(
        ["restic", "init", "--repo", str(path)],
        check=True,
        capture_output=True,
        env={**os.environ, "RESTIC_PASSWORD": password},
    )
    (original,) = (path / "keys").iterdir()
    cheap = cheapen_restic_key(original.read_bytes(), password)
    (path / "keys" / hashlib.sha256(cheap).hexdigest()).write_bytes(cheap)
    original.unlink()
    return str(path)


@pytest.fixture
def setup(
    tmp_path: Path,
    postgres_server: str,
    postgres_database: str,
    s3_server: str,
    s3_bucket: str,
    restic_binary: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Setup:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RESTIC_CACHE_DIR", str(tmp_path / "restic-cache"))
    fill_postgres(postgres_database, 500)
    backend = tmp_path / "backend"
    sources = [
        {"name": "orders-pg", "type": "postgresql", "url": postgres_database}
        | {"password": "env:DRKIT_FAULTS_PG_PASSWORD"},
        {"name": "app-db", "type": "sqlite", "path": str(backend / "app.db")},
        {"name": "app-config", "type": "files", "paths": [str(backend / "config")]},
    ]
    keys = [{"name": "glass", "type": "passphrase", "passphrase": "env:DRKIT_FAULTS_PASSPHRASE"}]
    stores = [
        *filesystem_stores(tmp_path, "disk"),
        {"name": "offsite", "type": "restic", "region": "eu-central-1"}
        | {"repository": restic_repository(tmp_path / "restic", SECRETS["DRKIT_FAULTS_RESTIC_PASSWORD"])}
        | {"password": "env:DRKIT_FAULTS_RESTIC_PASSWORD"},
        {"name": "s3", "type": "s3", "bucket": s3_bucket, "region": "us-east-1"}
        | {"endpoint_url": s3_server, "access_key_id": "env:DRKIT_FAULTS_S3_KEY_ID"}
        | {"secret_access_key": "env:DRKIT_FAULTS_S3_SECRET"},
    ]  # fmt: skip
    drill = {
        "sandbox": {"postgresql": f"{postgres_server}/postgres"}
        | {"password": "env:DRKIT_FAULTS_PG_PASSWORD"}
    }
    return make_setup(tmp_path, stores, sources=sources, keys=keys, drill=drill)


class ArgvWatcher:
    """Collects the argv of a process and all its descendants, polling /proc in a thread."""

    def __init__(self, process: subprocess.Popen[str]):
        self.process = process
        self.seen: dict[int, str] = {}
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        root = self.process.pid
        while self.process.poll() is None:
            for pid in [root, *descendants(root)]:
                if pid in self.seen:
                    continue
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if argv:
                    self.seen[pid] = argv.replace(b"\0", b" ").decode("utf-8", "replace")
            time.sleep(0.002)

    def join(self) -> list[str]:
        self._thread.join(timeout=30)
        return list(self.seen.values())


def run_watched(setup: Setup, *args: str) -> tuple[int, str, str, list[str]]:
    process = start_drkit(setup.catalog, "-vv", "--log-format", "text", *args)
    watcher = ArgvWatcher(process)
    stdout, stderr = process.communicate(timeout=180)
    return process.returncode, stdout, stderr, watcher.join()


@pytest.fixture
def restored_database(postgres_database: str, postgres_server: str) -> Iterator[str]:
    name = postgres_database.rsplit("/", 1)[1] + "_restored"
    yield name
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_secrets_appear_in_no_argv_log_catalog_row_stored_object_or_report(
    setup: Setup, restored_database: str, s3_server: str, s3_bucket: str
) -> None:
    target = setup.tmp / "restored"
    reports = {fmt: setup.tmp / f"report.{fmt}" for fmt in ("md", "html", "json")}
    commands = [
        ("backup", str(setup.plan)),
        (
            *("restore", "--yes", str(setup.plan), "--to", f"orders-pg={restored_database}"),
            *("--to", f"app-db={target / 'app.db'}", "--to", f"app-config={target / 'config'}"),
        ),
        ("drill", str(setup.plan)),
        *[("report", str(setup.plan), "--format", f, "-o", str(p)) for f, p in reports.items()],
    ]
    argvs: list[str] = []
    for command in commands:
        code, stdout, stderr, seen = run_watched(setup, *command)
        assert code == 0, (command[0], stdout, stderr)
        assert not leaks(stdout) and not leaks(stderr), (command[0], leaks(stdout + stderr))
        argvs.extend(seen)
    programs = {argv.split()[0].rsplit("/", 1)[-1] for argv in argvs}
    assert {"pg_dump", "pg_restore", "restic"} <= programs, programs  # the watcher saw them
    assert not [argv for argv in argvs if leaks(argv)]
    assert (target / "app.db").is_file()

    with sqlite3.connect(setup.catalog.removeprefix("sqlite:///")) as catalog:
        tables = [row[0] for row in catalog.execute("SELECT name FROM sqlite_master")]
        for table in tables:
            if table.startswith("sqlite_") or table.startswith("ix_"):
                continue
            for row in catalog.execute(f'SELECT * FROM "{table}"'):
                assert not leaks(repr(row)), (table, row)

    stored = [p for p in setup.tmp.rglob("*") if p.is_file() and "backend" not in p.parts]
    assert any(p.name == "manifest.json" for p in stored)
    for path in stored:  # stores, restic repository, reports, plan files, catalog file
        assert not leaks(path.read_bytes()), path
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    objects = s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])
    assert objects
    for item in objects:
        body = s3.get_object(Bucket=s3_bucket, Key=item["Key"])["Body"].read()
        assert not leaks(body), item["Key"]
    assert all(path.stat().st_size > 0 for path in reports.values())
