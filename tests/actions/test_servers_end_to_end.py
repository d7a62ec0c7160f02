"""The whole product against real parts: PostgreSQL and MariaDB on 127.0.0.1, a SQLite file
being written to during the backup, a config tree; stored in a filesystem store, two S3
"regions" on moto's server (real HTTP) and a restic repository. Then verify, restore with
failover, the catalog lost, and a drill with every check."""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pymysql
import pytest

from drkit.actions.backup import backup
from drkit.actions.drill import drill
from drkit.actions.resources import Resources, open_resources
from drkit.actions.restore import RestoreRequest, execute_restore, prepare_restore
from drkit.actions.verify import verify
from drkit.catalog import Catalog
from drkit.outcome import Outcome
from drkit.repository.layout import MANIFEST_NAME

from ..conftest import free_port, is_port_open
from .conftest import MARKER, load, make_backend, plan_document

pytestmark = [pytest.mark.postgres, pytest.mark.mysql, pytest.mark.s3, pytest.mark.restic]

PG_SETUP = f"""
CREATE TABLE orders (id serial PRIMARY KEY, note text, payload jsonb, blob bytea, tags text[],
                     created_at timestamptz DEFAULT now());
INSERT INTO orders (note, payload, blob, tags)
SELECT '{MARKER} ' || g || ' Ærø 東京', jsonb_build_object('n', g), decode(md5(g::text), 'hex'),
       ARRAY['a', NULL] FROM generate_series(1, 2000) g;
INSERT INTO orders (note) VALUES (NULL);
CREATE SEQUENCE invoice_numbers START 500;
SELECT nextval('invoice_numbers') FROM generate_series(1, 7);
CREATE VIEW recent AS SELECT id FROM orders WHERE id > 10;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := NEW.note; RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
SELECT lo_from_bytea(0, convert_to('{MARKER} large object', 'UTF8'));
"""

MYSQL_SETUP = [
    "CREATE TABLE ledger (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(200), doc JSON, bin BLOB)",
    f"INSERT INTO ledger (note, doc, bin) VALUES ('{MARKER} 😀', '{{\"a\": 1}}', X'00FF10'), (NULL, NULL, NULL)",
    "CREATE PROCEDURE ledger_count() SELECT count(*) FROM ledger",
    "CREATE TRIGGER ledger_note BEFORE INSERT ON ledger FOR EACH ROW SET NEW.note = COALESCE(NEW.note, '')",
]


def pg_engine_dump(url: str) -> str:
    """pg_dump's own plain rendering, for comparing source and restored databases."""
    completed = subprocess.run(
        ["pg_dump", "--no-owner", "--no-privileges", "-d", url],
        capture_output=True,
        text=True,
        check=True,
    )
    return "\n".join(
        line
        for line in completed.stdout.splitlines()
        if not line.startswith(("--", "\\restrict", "\\unrestrict"))
    )


def mysql_engine_dump(url: str) -> str:
    database = url.rsplit("/", 1)[1]
    completed = subprocess.run(
        [
            "mariadb-dump",
            "-h",
            "127.0.0.1",
            "-u",
            "root",
            "--skip-comments",
            "--routines",
            "--hex-blob",
            "--triggers",
            "--skip-dump-date",
            database,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


@pytest.fixture
def pg_source(postgres_database: str) -> str:
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        connection.execute(PG_SETUP)  # type: ignore[arg-type]
    return postgres_database


@pytest.fixture
def mysql_source(mysql_database: str) -> str:
    connection = pymysql.connect(
        host="127.0.0.1", user="root", password="", database=mysql_database.rsplit("/", 1)[1]
    )
    with connection.cursor() as cursor:
        for statement in MYSQL_SETUP:
            cursor.execute(statement)
    connection.commit()
    connection.close()
    return mysql_database


@pytest.fixture
def spare_s3() -> Iterator[tuple[str, Any]]:
    """A second moto server of its own, so a test can take this 'region' down."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}", server
    if is_port_open("127.0.0.1", port):
        server.stop()


@pytest.fixture
def world(
    tmp_path: Path,
    pg_source: str,
    mysql_source: str,
    s3_server: str,
    spare_s3: tuple[str, Any],
    restic_binary: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    backend = make_backend(tmp_path / "backend")
    monkeypatch.setenv("RESTIC_TEST_PASSWORD", "restic-" + secrets.token_hex(8))
    spare_endpoint, spare_server = spare_s3
    buckets = {}
    for name, endpoint in (("use1", spare_endpoint), ("euw1", s3_server)):
        bucket = f"drkit-e2e-{name}-{secrets.token_hex(3)}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        buckets[name] = (bucket, endpoint)
    stores = [
        {
            "name": "s3-use1",
            "type": "s3",
            "bucket": buckets["use1"][0],
            "region": "us-east-1",
            "endpoint_url": spare_endpoint,
            "prefix": "dr/",
        },
        {
            "name": "s3-euw1",
            "type": "s3",
            "bucket": buckets["euw1"][0],
            "region": "eu-west-1",
            "endpoint_url": s3_server,
        },
        {"name": "nfs", "type": "filesystem", "path": str(tmp_path / "nfs"), "region": "on-prem"},
        {
            "name": "offsite",
            "type": "restic",
            "repository": str(tmp_path / "restic"),
            "password": "env:RESTIC_TEST_PASSWORD",
            "region": "eu-central-1",
            "init": True,
        },
    ]
    sources = [
        {"name": "orders-db", "type": "postgresql", "url": pg_source},
        {"name": "ledger-db", "type": "mysql", "url": mysql_source},
        {"name": "sessions", "type": "sqlite", "path": str(backend["database"])},
        {"name": "config", "type": "files", "paths": [str(backend["config"])]},
    ]
    server_url = pg_source.rsplit("/", 1)[0]
    drill_section = {
        "sandbox": {"postgresql": "ephemeral", "mysql": mysql_source.rsplit("/", 1)[0] + "/"},
        "checks": [
            {"type": "fingerprint"},
            {
                "type": "sql",
                "source": "orders-db",
                "query": "SELECT count(*) FROM orders",
                "expect": "= 2001",
            },
            {
                "type": "sql",
                "source": "ledger-db",
                "query": "SELECT count(*) FROM ledger",
                "expect": "between 1 and 10",
            },
            {
                "type": "command",
                "run": [
                    "sh",
                    "-c",
                    'test -n "$DRKIT_SANDBOX_ORDERS_DB_URL" && test -f "$DRKIT_SANDBOX_SESSIONS_URL"',
                ],
            },
        ],
    }
    document = plan_document(
        tmp_path,
        stores,
        sources=sources,
        copies={"min_stores": 2, "min_regions": 2},
        drill=drill_section,
    )
    with Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}") as catalog:
        yield {
            "document": document,
            "catalog": catalog,
            "buckets": buckets,
            "tmp": tmp_path,
            "backend": backend,
            "spare_server": spare_server,
            "pg": pg_source,
            "mysql": mysql_source,
            "server_url": server_url,
        }


def resources_of(
    world: dict[str, Any],
    document: dict[str, Any] | None = None,
    catalog: Catalog | bool | None = True,
) -> Resources:
    plan = load(document or world["document"])
    chosen = world["catalog"] if catalog is True else (catalog or None)
    return open_resources(plan, chosen)  # type: ignore[arg-type]


def stored_blobs(world: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    for name, (bucket, endpoint) in world["buckets"].items():
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            yield (
                f"s3-{name}:{item['Key']}",
                client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read(),
            )
    for root in (world["tmp"] / "nfs", world["tmp"] / "restic"):
        for path in root.rglob("*"):
            if path.is_file():
                yield str(path), path.read_bytes()


def keep_writing(database: Path, stop: threading.Event) -> None:
    connection = sqlite3.connect(database)
    while not stop.is_set():
        connection.execute("INSERT INTO orders (note, total) VALUES ('live', 1)")
        connection.commit()
    connection.close()


def test_backup_everything_everywhere_then_verify_and_detect_a_flipped_byte(
    world: dict[str, Any],
) -> None:
    resources = resources_of(world)
    stop = threading.Event()
    writer = threading.Thread(target=keep_writing, args=(world["backend"]["database"], stop))
    writer.start()
    try:
        result = backup(resources)
    finally:
        stop.set()
        writer.join()
    assert result.outcome is Outcome.OK, result.to_json()
    for store in resources.stores:
        keys = store.list(f"test-api/snapshots/{result.snapshot_id}/")
        assert any(key.endswith(MANIFEST_NAME) for key in keys), store.name
    for where, blob in stored_blobs(world):
        if not where.endswith(MANIFEST_NAME):
            assert MARKER.encode() not in blob, f"plaintext in {where}"
    record = world["catalog"].get_snapshot(result.snapshot_id)
    assert sorted(record.complete_stores()) == ["nfs", "offsite", "s3-euw1", "s3-use1"]
    assert {a.source for a in record.artifacts} == {"orders-db", "ledger-db", "sessions", "config"}
    assert verify(resources).ok

    bucket, endpoint = world["buckets"]["euw1"]
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    key = f"test-api/snapshots/{result.snapshot_id}/ledger-db.drkit"
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 3] ^= 0x20
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    checked = verify(resources)
    assert [c.store for c in checked.checks if not c.ok] == ["s3-euw1"]


def test_restore_databases_into_new_ones_identically_with_a_region_down(
    world: dict[str, Any], postgres_server: str, mysql_server: str
) -> None:
    resources = resources_of(world)
    assert backup(resources).outcome is Outcome.OK
    world["spare_server"].stop()  # us-east-1 is down
    pg_target = f"drkit_restored_{secrets.token_hex(3)}"
    my_target = f"drkit_restored_{secrets.token_hex(3)}"
    request = RestoreRequest(
        sources=["orders-db", "ledger-db"], targets={"orders-db": pg_target, "ledger-db": my_target}
    )
    try:
        prepared = execute_restore(resources, prepare_restore(resources, request), force=False)
        for item in prepared.items:
            assert item.store == "s3-euw1" and item.failovers[0].startswith("s3-use1:")
            assert not item.differences
        assert pg_engine_dump(f"{postgres_server}/{pg_target}") == pg_engine_dump(world["pg"])
        assert mysql_engine_dump(f"{mysql_server}/{my_target}") == mysql_engine_dump(world["mysql"])
    finally:
        with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{pg_target}" WITH (FORCE)')  # type: ignore[arg-type]
        connection = pymysql.connect(host="127.0.0.1", user="root", password="")
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{my_target}`")
        connection.close()


def test_one_store_down_is_degraded_then_failed_when_the_policy_breaks(
    world: dict[str, Any],
) -> None:
    world["spare_server"].stop()
    result = backup(resources_of(world))
    assert result.outcome is Outcome.DEGRADED
    [down] = [s for s in result.stores if not s.ok]
    assert down.store == "s3-use1" and down.error
    strict = dict(world["document"], copies={"min_stores": 4, "min_regions": 2})
    failed = backup(resources_of(world, strict))
    assert failed.outcome is Outcome.FAILED


def _mysql_drill_databases() -> set[str]:
    with (
        pymysql.connect(host="127.0.0.1", user="root", password="") as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SHOW DATABASES LIKE 'drkit\\_drill\\_%'")
        return {row[0] for row in cursor.fetchall()}


def _sandbox_processes() -> set[str]:
    found = subprocess.run(["pgrep", "-f", "drkit-sandbox-pg-"], capture_output=True, check=False)
    return set(found.stdout.decode().split())


def _pg_drill_databases(server: str) -> set[str]:
    with psycopg.connect(f"{server}/postgres") as connection:
        rows = connection.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'drkit\\_drill\\_%'"
        ).fetchall()
    return {row[0] for row in rows}


def test_drill_with_every_source_and_check_passes_and_leaves_nothing(world: dict[str, Any]) -> None:
    # The servers are shared with other runs: leftovers are what this drill added.
    databases_before, processes_before = _mysql_drill_databases(), _sandbox_processes()
    resources = resources_of(world)
    assert backup(resources).outcome is Outcome.OK
    [result] = drill(resources)
    assert result.outcome is Outcome.OK, result.to_json()
    assert {c.name.split(" ")[0] for c in result.checks} == {"fingerprint", "sql", "command"}
    assert all(c.passed for c in result.checks)
    assert result.sandbox_kinds == ["directory", "ephemeral-postgresql", "scratch-mysql"]
    assert _sandbox_processes() - processes_before == set()
    assert _mysql_drill_databases() - databases_before == set()


def test_drill_into_a_scratch_database_on_the_server(
    world: dict[str, Any], postgres_server: str
) -> None:
    document = dict(world["document"])
    document["drill"] = dict(
        document["drill"],
        sandbox=dict(document["drill"]["sandbox"], postgresql=postgres_server + "/"),
    )
    resources = resources_of(world, document)
    before = _pg_drill_databases(postgres_server)
    assert backup(resources).outcome is Outcome.OK
    [result] = drill(resources)
    assert result.outcome is Outcome.OK, result.to_json()
    assert "scratch-postgresql" in result.sandbox_kinds
    assert _pg_drill_databases(postgres_server) - before == set()


def _kill_children_named(name: str) -> int:
    """SIGKILL every child process of this test process called ``name``; how many."""
    import os
    import signal

    killed = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            command = fields[0].split("(", 1)[1]
            parent = int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if command == name and parent == os.getpid():
            os.kill(int(stat.parent.name), signal.SIGKILL)
            killed += 1
    return killed


def test_pg_dump_killed_halfway_leaves_no_complete_snapshot_anywhere(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import contextmanager

    from drkit.actions import backup as backup_module

    real_make_source = backup_module.make_source
    killed: list[int] = []

    def make_source(spec: Any) -> Any:
        source = real_make_source(spec)
        if spec.type != "postgresql":
            return source

        class KilledMidway:
            def __getattr__(self, name: str) -> Any:
                return getattr(source, name)

            @contextmanager
            def snapshot(self) -> Iterator[Any]:
                with source.snapshot() as capture:
                    inner = capture.chunks

                    def chunks() -> Iterator[bytes]:
                        for index, chunk in enumerate(inner):
                            yield chunk
                            if index == 0:
                                killed.append(_kill_children_named("pg_dump"))

                    capture.chunks = chunks()
                    yield capture

        return KilledMidway()

    monkeypatch.setattr(backup_module, "make_source", make_source)
    resources = resources_of(world)
    result = backup(resources)
    assert killed == [1]
    assert result.outcome is Outcome.FAILED and "pg_dump" in (result.error or "")
    for store in resources.stores:
        assert not [k for k in store.list("test-api/") if k.endswith(MANIFEST_NAME)], store.name
    assert world["catalog"].list_snapshots("test-api") == []
    monkeypatch.setattr(backup_module, "make_source", real_make_source)
    assert backup(resources).outcome is Outcome.OK
