"""No secret leaks (DESIGN promise 8). backup, restore, drill and report run as CLI children
with distinctive secrets behind every kind of reference: a passphrase key, a PostgreSQL
password (trust auth ignores it, but drkit still hands it to pg_dump and psycopg), a MariaDB
password, the sandbox server's password, restic passwords and S3 credentials (a restic
repository on moto's S3 too). The values must appear in no process's argv and no child's
environment (both sampled in /proc while the commands run: pg_dump, mariadb-dump, restic,
pg_restore, the mariadb client, initdb, the sandbox's postgres, a command check), no log line
(-vv), no catalog row, no stored object or manifest, and no report."""

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
from typing import Any

import boto3
import psycopg
import pymysql
import pytest

from ..conftest import MYSQL_HOST, MYSQL_PORT
from ..stores.conftest import cheapen_restic_key
from .conftest import Setup, filesystem_stores, fill_postgres, make_setup
from .helpers import descendants, start_drkit

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.mysql,
    pytest.mark.restic,
    pytest.mark.s3,
    pytest.mark.slow,
]
TOKEN = secrets.token_hex(6)
SECRETS = {
    "DRKIT_FAULTS_PASSPHRASE": f"passphrase-{TOKEN}-Zq",
    "DRKIT_FAULTS_PG_PASSWORD": f"pg-password-{TOKEN}-Zq",
    "DRKIT_FAULTS_MYSQL_PASSWORD": f"mysql-password-{TOKEN}-Zq",
    "DRKIT_FAULTS_SANDBOX_PASSWORD": f"sandbox-password-{TOKEN}-Zq",
    "DRKIT_FAULTS_RESTIC_PASSWORD": f"restic-password-{TOKEN}-Zq",
    "DRKIT_FAULTS_S3_KEY_ID": f"AKIA{TOKEN.upper()}ZQ",
    "DRKIT_FAULTS_S3_SECRET": f"s3-secret-{TOKEN}-Zq",
}
MYSQL_SOURCE_USER = f"drkit_faults_source_{TOKEN}"
LEDGER_ROWS = 50_000
MYSQL_SANDBOX_USER = f"drkit_faults_sandbox_{TOKEN}"


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


def mysql_root() -> Any:
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="")


@pytest.fixture
def mysql_users(mysql_server: str) -> Iterator[None]:
    """A source user and a sandbox-server admin, each with a password (MariaDB checks them)."""
    grants = {
        MYSQL_SOURCE_USER: ("DRKIT_FAULTS_MYSQL_PASSWORD", "ALL PRIVILEGES ON *.*"),
        MYSQL_SANDBOX_USER: ("DRKIT_FAULTS_SANDBOX_PASSWORD", "ALL PRIVILEGES ON *.*"),
    }
    connection = mysql_root()
    with connection.cursor() as cursor:
        for user, (variable, privileges) in grants.items():
            for host in ("%", "localhost"):
                password = SECRETS[variable]
                cursor.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
                cursor.execute(f"GRANT {privileges} TO '{user}'@'{host}' WITH GRANT OPTION")
    yield
    with connection.cursor() as cursor:
        for user in grants:
            for host in ("%", "localhost"):
                cursor.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
    connection.close()


@pytest.fixture
def setup(
    tmp_path: Path,
    postgres_database: str,
    mysql_server: str,
    mysql_database: str,
    mysql_users: None,
    s3_server: str,
    s3_bucket: str,
    restic_binary: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Setup:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RESTIC_CACHE_DIR", str(tmp_path / "restic-cache"))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)  # restic asks moto for it instead
    fill_postgres(postgres_database, 500)
    mysql_url = mysql_database.replace("mysql://root@", f"mysql://{MYSQL_SOURCE_USER}@", 1)
    connection = mysql_root()
    with connection.cursor() as cursor:
        database = f"`{mysql_url.rsplit('/', 1)[1]}`"
        table = f"{database}.ledger"
        cursor.execute(f"CREATE TABLE {table} (id INT, note VARCHAR(100))")
        # enough rows that mariadb-dump and the client live long enough to be sampled
        cursor.execute(
            f"INSERT INTO {table} SELECT seq, REPEAT('x', 90) FROM {database}.seq_1_to_{LEDGER_ROWS}"
        )
    connection.commit()
    connection.close()
    backend = tmp_path / "backend"
    sources = [
        {"name": "orders-pg", "type": "postgresql", "url": postgres_database}
        | {"password": "env:DRKIT_FAULTS_PG_PASSWORD"},
        {"name": "ledger", "type": "mysql", "url": mysql_url}
        | {"password": "env:DRKIT_FAULTS_MYSQL_PASSWORD"},
        {"name": "app-db", "type": "sqlite", "path": str(backend / "app.db")},
        {"name": "app-config", "type": "files", "paths": [str(backend / "config")]},
    ]
    keys = [{"name": "glass", "type": "passphrase", "passphrase": "env:DRKIT_FAULTS_PASSPHRASE"}]
    restic_password = SECRETS["DRKIT_FAULTS_RESTIC_PASSWORD"]
    s3_keys = {"access_key_id": "env:DRKIT_FAULTS_S3_KEY_ID"} | {
        "secret_access_key": "env:DRKIT_FAULTS_S3_SECRET"
    }
    stores = [
        *filesystem_stores(tmp_path, "disk"),
        {"name": "offsite", "type": "restic", "region": "eu-central-1"}
        | {"repository": restic_repository(tmp_path / "restic", restic_password)}
        | {"password": "env:DRKIT_FAULTS_RESTIC_PASSWORD"},
        {"name": "offsite-s3", "type": "restic", "region": "us-east-1", "init": True}
        | {"repository": f"s3:{s3_server}/{s3_bucket}/restic"}
        | {"password": "env:DRKIT_FAULTS_RESTIC_PASSWORD"} | s3_keys,
        {"name": "s3", "type": "s3", "bucket": s3_bucket, "region": "us-east-1"}
        | {"endpoint_url": s3_server, "prefix": "drkit/"} | s3_keys,
    ]  # fmt: skip
    drill = {
        "sandbox": {"mysql": f"mysql://{MYSQL_SANDBOX_USER}@{MYSQL_HOST}:{MYSQL_PORT}/"}
        | {"password": "env:DRKIT_FAULTS_SANDBOX_PASSWORD"},
        "checks": [
            {"type": "fingerprint"},
            {"type": "sql", "source": "ledger", "query": "SELECT count(*) FROM ledger"}
            | {"expect": f"= {LEDGER_ROWS}"},
            {"type": "command", "run": ["sh", "-c", "sleep 0.5; true"]},
        ],
    }
    return make_setup(tmp_path, stores, sources=sources, keys=keys, drill=drill)


class ProcessWatcher:
    """Collects the argv and environment of a process, all its descendants and every process
    carrying its scratch marker (a daemon such as the sandbox's postgres is no descendant),
    polling /proc in a thread."""

    def __init__(self, process: subprocess.Popen[str]):
        self.process = process
        self.argv: dict[int, str] = {}
        self.environ: dict[int, set[bytes]] = {}
        self.drkit_argv = b"\0".join(arg.encode() for arg in process.args) + b"\0"  # type: ignore[union-attr]
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        root = self.process.pid
        while self.process.poll() is None:
            for pid in {root, *descendants(root), *marked_processes()}:
                self._sample(pid)
            time.sleep(0.002)

    def _sample(self, pid: int) -> None:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return
        if argv:
            self.argv[pid] = argv.replace(b"\0", b" ").decode("utf-8", "replace")
        # drkit itself holds the plan's env: secrets, by design; so does a child of it caught
        # between fork and exec, still running drkit's own program
        if argv and argv != self.drkit_argv:
            self.environ.setdefault(pid, set()).add(environ)

    def join(self) -> tuple[list[str], dict[str, bytes]]:
        self._thread.join(timeout=30)
        programs = {pid: argv.split()[0].rsplit("/", 1)[-1] for pid, argv in self.argv.items()}
        children = {
            f"{programs.get(pid, '?')}[{pid}]": b"\n".join(samples)
            for pid, samples in self.environ.items()
        }
        return list(self.argv.values()), children


def marked_processes() -> list[int]:
    """Processes whose environment names a drkit scratch folder (DRKIT_OWNER)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"DRKIT_OWNER=" in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def run_watched(setup: Setup, *args: str) -> tuple[int, str, str, list[str], dict[str, bytes]]:
    process = start_drkit(setup.catalog, "-vv", "--log-format", "text", *args)
    watcher = ProcessWatcher(process)
    stdout, stderr = process.communicate(timeout=240)
    argvs, environments = watcher.join()
    return process.returncode, stdout, stderr, argvs, environments


@pytest.fixture
def restored_mysql_database(mysql_server: str) -> Iterator[str]:
    name = f"drkit_faults_restored_{TOKEN}"
    yield name
    connection = mysql_root()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    connection.close()


@pytest.fixture
def restored_database(postgres_database: str, postgres_server: str) -> Iterator[str]:
    name = postgres_database.rsplit("/", 1)[1] + "_restored"
    yield name
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_secrets_appear_in_no_argv_environment_log_catalog_row_stored_object_or_report(
    setup: Setup,
    restored_database: str,
    restored_mysql_database: str,
    s3_server: str,
    s3_bucket: str,
) -> None:
    target = setup.tmp / "restored"
    reports = {fmt: setup.tmp / f"report.{fmt}" for fmt in ("md", "html", "json")}
    commands = [
        ("backup", str(setup.plan)),
        (
            *("restore", "--yes", str(setup.plan), "--to", f"orders-pg={restored_database}"),
            *("--to", f"ledger={restored_mysql_database}"),
            *("--to", f"app-db={target / 'app.db'}", "--to", f"app-config={target / 'config'}"),
        ),
        ("drill", str(setup.plan)),
        *[("report", str(setup.plan), "--format", f, "-o", str(p)) for f, p in reports.items()],
    ]
    argvs: list[str] = []
    environments: dict[str, bytes] = {}
    for command in commands:
        code, stdout, stderr, seen, environ = run_watched(setup, *command)
        assert code == 0, (command[0], stdout, stderr)
        assert not leaks(stdout) and not leaks(stderr), (command[0], leaks(stdout + stderr))
        argvs.extend(seen)
        environments.update(environ)
    programs = {argv.split()[0].rsplit("/", 1)[-1] for argv in argvs}
    sampled = {name.split("[")[0] for name in environments}
    expected = {"pg_dump", "pg_restore", "restic", "mariadb-dump", "mariadb", "initdb", "sh"}
    assert expected <= programs and expected <= sampled, (programs, sampled)
    assert "postgres" in sampled  # the sandbox's server, a daemon, sampled by its marker
    print(f"environments of {len(environments)} children sampled: {sorted(sampled)}")
    assert not [argv for argv in argvs if leaks(argv)]
    assert {name: leaks(env) for name, env in environments.items() if leaks(env)} == {}
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
