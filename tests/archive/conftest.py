"""A PostgreSQL cluster with replication access, started by the tests themselves (the shared
server has none): initdb + pg_ctl on a free port with ``wal_level=replica`` and a
``replication`` line in pg_hba.conf, trust on 127.0.0.1 only, stopped in teardown. Plans for
it, with a ``pitr:`` section, filesystem stores and a key file."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from drkit.actions.resources import Resources, open_resources
from drkit.archive.archiver import Archiver
from drkit.archive.binlog_archiver import BinlogArchiver
from drkit.catalog import Catalog
from drkit.execute import find_program
from drkit.plan.schema import MysqlSource, Plan, PostgresqlSource
from tests.actions.conftest import load, plan_document
from tests.conftest import free_port, require

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "fsync": "off",
    "shared_buffers": "32MB",
    "max_connections": "40",
}


@dataclass
class ReplicationCluster:
    folder: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True)


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def running_cluster(prefix: str) -> Iterator[ReplicationCluster]:
    """A new cluster with replication access, stopped and deleted when the block ends."""
    try:
        initdb = find_program("initdb")
    except Exception:
        require(False, "initdb and pg_ctl are needed for the PITR tests")
        raise
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = ReplicationCluster(folder, free_port())
    subprocess.run(
        _as_server_user(
            [initdb, "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "--no-sync"]
        ),
        check=True,
        capture_output=True,
    )
    (cluster.data / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        "host replication all 127.0.0.1/32 trust\n"
    )
    try:
        start_server(cluster)
        yield cluster
    finally:
        stop_server(cluster)
        shutil.rmtree(folder, ignore_errors=True)


def start_server(cluster: ReplicationCluster) -> None:
    """Start ``cluster`` (its settings appended first: port, socket, replication)."""
    settings = {
        **SETTINGS,
        "port": str(cluster.port),
        "unix_socket_directories": f"'{cluster.folder}'",
    }
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
    log = str(cluster.folder / "server.log")
    start = [find_program("pg_ctl"), "-D", str(cluster.data), "-l", log, "-w", "start"]
    subprocess.run(_as_server_user(start), check=True, capture_output=True)


def stop_server(cluster: ReplicationCluster) -> None:
    stop = [find_program("pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "-w", "stop"]
    subprocess.run(_as_server_user(stop), check=False, capture_output=True)


@pytest.fixture(scope="session")
def replication_cluster() -> Iterator[ReplicationCluster]:
    with running_cluster("drkit-test-replication-") as cluster:
        yield cluster


@pytest.fixture
def server_folder() -> Iterator[Path]:
    """A folder the server's user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="drkit-test-pitr-", dir="/tmp"))
    os.chmod(folder, 0o755)
    yield folder
    for data in folder.glob("*/PG_VERSION"):
        with contextlib.suppress(Exception):
            from drkit.sandboxes import recovered_cluster

            recovered_cluster.stop(data.parent, immediate=True)
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class PitrSetup:
    plan: Plan
    resources: Resources
    catalog: Catalog
    cluster: ReplicationCluster
    database: str
    spool: Path
    document: dict[str, Any]
    catalog_url: str
    folder: Path

    @property
    def source(self) -> PostgresqlSource:
        source = self.plan.sources[0]
        assert isinstance(source, PostgresqlSource)
        return source

    def archiver(self) -> Archiver:
        return self.archiver_with()

    def archiver_with(self, **options: Any) -> Archiver:
        return Archiver(
            self.plan,
            self.source,
            self.resources.stores,
            self.resources.keys,
            self.spool,
            ledger=self.catalog,
            **options,
        )


@pytest.fixture
def pitr_setup(
    replication_cluster: ReplicationCluster, tmp_path: Path
) -> Iterator[Callable[..., PitrSetup]]:
    """Builds a plan on a new database of the replication cluster, with its own slot."""
    made: list[PitrSetup] = []

    def build(
        stores: list[dict[str, Any]] | None = None,
        plan_extra: dict[str, Any] | None = None,
        cluster: ReplicationCluster = replication_cluster,
        **pitr: Any,
    ) -> PitrSetup:
        database = f"drkit_pitr_{os.urandom(4).hex()}"
        with cluster.connect() as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
        slot = f"drkit_test_{os.urandom(4).hex()}"
        spool = tmp_path / f"spool-{slot}"
        source = {
            "name": "orders",
            "type": "postgresql",
            "url": cluster.url(database),
            "pitr": {"slot": slot, "spool": str(spool), "ship_partial_every": "1s", **pitr},
        }
        if stores is None:
            stores = [
                {
                    "name": "east",
                    "type": "filesystem",
                    "path": str(tmp_path / "east"),
                    "region": "east",
                },
                {
                    "name": "west",
                    "type": "filesystem",
                    "path": str(tmp_path / "west"),
                    "region": "west",
                },
            ]
        document = plan_document(tmp_path, stores, sources=[source], **(plan_extra or {}))
        plan = load(document)
        catalog_url = f"sqlite:///{tmp_path / f'catalog-{slot}.db'}"
        catalog = Catalog.open(catalog_url)
        setup = PitrSetup(
            plan,
            open_resources(plan, catalog),
            catalog,
            cluster,
            database,
            spool,
            document,
            catalog_url,
            tmp_path,
        )
        made.append(setup)
        return setup

    yield build
    for setup in made:
        setup.catalog.close()
        if setup.cluster is not replication_cluster:
            continue  # a cluster of the test's own, gone with it
        with replication_cluster.connect() as connection:
            slot = setup.source.pitr.slot if setup.source.pitr else None
            with contextlib.suppress(psycopg.Error):
                connection.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            connection.execute(f'DROP DATABASE IF EXISTS "{setup.database}" WITH (FORCE)')


@contextlib.contextmanager
def archiving(setup: PitrSetup) -> Iterator[Archiver]:
    """``drkit archive`` in a thread for the duration of the block."""
    with running(setup.archiver()) as archiver:
        yield archiver


# --- MariaDB with the binary log on (the shared server has log_bin off) ---------------------


@dataclass
class BinlogServer:
    """A throwaway mariadbd with ``--log-bin``, on a free port, its datadir under /tmp."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", database=database, autocommit=True
        )

    def execute(self, sql: str, database: str | None = None) -> list[tuple[Any, ...]]:
        with self.connect(database) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())

    def start(self) -> None:
        """Start mariadbd (ROW binlog, server id 1) and wait until it answers."""
        self.process = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.data}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.folder / 'mariadb.sock'}",
                f"--pid-file={self.folder / 'mariadb.pid'}",
                f"--log-error={self.folder / 'server.log'}",
                "--log-bin=mariadb-bin",
                "--server-id=1",
                "--binlog-format=ROW",
                "--innodb-buffer-pool-size=16M",
                "--skip-name-resolve",
                *(["--user=root"] if os.geteuid() == 0 else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.execute("SELECT 1")
                return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@contextlib.contextmanager
def running_binlog_server() -> Iterator[BinlogServer]:
    """mariadb-install-db + mariadbd, stopped and deleted in teardown."""
    require(
        shutil.which("mariadbd") is not None and shutil.which("mariadb-install-db") is not None,
        "mariadbd and mariadb-install-db are needed for the binlog tests",
    )
    folder = Path(tempfile.mkdtemp(prefix="drkit-test-binlog-", dir="/tmp"))
    server = BinlogServer(folder, free_port())
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={server.data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *(["--user=root"] if os.geteuid() == 0 else []),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def binlog_server() -> Iterator[BinlogServer]:
    with running_binlog_server() as server:
        yield server


@dataclass
class BinlogSetup:
    plan: Plan
    resources: Resources
    catalog: Catalog
    server: BinlogServer
    database: str
    spool: Path
    document: dict[str, Any]
    catalog_url: str
    folder: Path

    @property
    def source(self) -> MysqlSource:
        source = self.plan.sources[0]
        assert isinstance(source, MysqlSource)
        return source

    def archiver(self) -> BinlogArchiver:
        return BinlogArchiver(
            self.plan,
            self.source,
            self.resources.stores,
            self.resources.keys,
            self.spool,
            ledger=self.catalog,
        )

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        return self.server.execute(sql, self.database)


@pytest.fixture
def binlog_setup(
    binlog_server: BinlogServer, tmp_path: Path
) -> Iterator[Callable[..., BinlogSetup]]:
    """Builds a plan on a new database of the binlog server, with two filesystem stores."""
    made: list[BinlogSetup] = []

    def build(plan_extra: dict[str, Any] | None = None, **pitr: Any) -> BinlogSetup:
        suffix = os.urandom(4).hex()
        database = f"drkit_binlog_{suffix}"
        binlog_server.execute(f"CREATE DATABASE {database}")
        spool = tmp_path / f"spool-{suffix}"
        source = {
            "name": "ledger",
            "type": "mysql",
            "url": binlog_server.url(database),
            "pitr": {"spool": str(spool), "ship_partial_every": "1s", **pitr},
        }
        stores = [
            {"name": name, "type": "filesystem", "path": str(tmp_path / name), "region": name}
            for name in ("east", "west")
        ]
        document = plan_document(tmp_path, stores, sources=[source], **(plan_extra or {}))
        plan = load(document)
        catalog_url = f"sqlite:///{tmp_path / f'catalog-{suffix}.db'}"
        catalog = Catalog.open(catalog_url)
        setup = BinlogSetup(
            plan,
            open_resources(plan, catalog),
            catalog,
            binlog_server,
            database,
            spool,
            document,
            catalog_url,
            tmp_path,
        )
        made.append(setup)
        return setup

    yield build
    for setup in made:
        setup.catalog.close()
        binlog_server.execute(f"DROP DATABASE IF EXISTS {setup.database}")


@contextlib.contextmanager
def running(archiver: Archiver) -> Iterator[Archiver]:
    """An archiver's ``run()`` in a thread for the duration of the block."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            archiver.run(stop)
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield archiver
    finally:
        stop.set()
        thread.join(60)
    if failure:
        raise failure[0]
