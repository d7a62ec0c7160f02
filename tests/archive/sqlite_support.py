"""A SQLite database under steady write load, and a plan capturing it into two folder stores:
shared by the SQLite capture tests."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drkit.actions.resources import Resources, open_resources
from drkit.archive.ledger import sqlite_store_windows
from drkit.archive.sqlite_capture import SqliteArchiver
from drkit.archive.window import Window
from drkit.catalog import Catalog
from drkit.plan.schema import Plan, SqliteSource
from drkit.sources.sqlite_wal import WAL_HEADER_SIZE, parse_header
from tests.actions.conftest import load, plan_document


@dataclass
class Commit:
    id: int
    began: datetime  # before the INSERT
    ended: datetime  # after COMMIT returned


@dataclass
class Writer:
    """Inserts one row per ``every`` seconds, each its own transaction, noting when each
    began and when its commit returned."""

    path: Path
    every: float = 0.02
    autocheckpoint: int | None = None
    commits: list[Commit] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Writer:
        self.stop.clear()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        if self.autocheckpoint is not None:
            connection.execute(f"PRAGMA wal_autocheckpoint={self.autocheckpoint}")
        try:
            while not self.stop.is_set():
                began = datetime.now(UTC)
                cursor = connection.execute(
                    "INSERT INTO orders (payload) VALUES (?)", (os.urandom(300).hex(),)
                )
                ended = datetime.now(UTC)
                assert cursor.lastrowid is not None
                self.commits.append(Commit(cursor.lastrowid, began, ended))
                time.sleep(self.every)
        finally:
            connection.close()

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)

    def wait_for_commit(self, timeout: float = 10.0) -> None:
        """Until one more row committed after this call."""
        count = len(self.commits)
        deadline = time.monotonic() + timeout
        while len(self.commits) <= count:
            assert time.monotonic() < deadline, "the writer committed nothing"
            time.sleep(0.005)


def log_incarnation(database: Path) -> tuple[int, tuple[int, int]] | None:
    """The write-ahead log's checkpoint sequence number and salts: they change each time
    SQLite starts the log over. None while there is no log."""
    deadline = time.monotonic() + 5
    while True:
        try:
            with open(f"{database}-wal", "rb") as file:
                raw = file.read(WAL_HEADER_SIZE)
        except FileNotFoundError:
            return None
        header = parse_header(raw)
        if header is not None:
            return header.checkpoint, header.salts
        assert time.monotonic() < deadline, "the log header stayed unreadable"
        time.sleep(0.005)  # being rewritten at this instant


@dataclass
class SqliteSetup:
    plan: Plan
    resources: Resources
    catalog: Catalog
    database: Path
    spool: Path
    folder: Path
    plan_file: Path
    catalog_url: str

    @property
    def source(self) -> SqliteSource:
        source = self.plan.sources[0]
        assert isinstance(source, SqliteSource)
        return source

    def archiver(self) -> SqliteArchiver:
        return SqliteArchiver(
            self.plan,
            self.source,
            self.resources.stores,
            self.resources.keys,
            self.spool,
            ledger=self.catalog,
        )

    def windows(self) -> list[Window]:
        return sqlite_store_windows(self.catalog, self.plan, self.source)

    def window_reaches(self, moment: datetime) -> bool:
        return all(w.end is not None and w.end >= moment for w in self.windows())

    def rows(self, path: Path | None = None) -> list[tuple[int, str]]:
        connection = sqlite3.connect(path or self.database)
        try:
            return list(connection.execute("SELECT id, payload FROM orders ORDER BY id"))
        finally:
            connection.close()


def make_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    finally:
        connection.close()


@pytest.fixture
def sqlite_setup(tmp_path: Path) -> Iterator[Callable[..., SqliteSetup]]:
    """Builds a plan capturing a new WAL-mode SQLite database into two filesystem stores."""
    made: list[SqliteSetup] = []

    def build(plan_extra: dict[str, Any] | None = None, **pitr: Any) -> SqliteSetup:
        suffix = os.urandom(4).hex()
        database = tmp_path / f"app-{suffix}" / "orders.db"
        make_database(database)
        spool = tmp_path / f"spool-{suffix}"
        source = {
            "name": "orders",
            "type": "sqlite",
            "path": str(database),
            "pitr": {"spool": str(spool), "ship_partial_every": "0.5s", **pitr},
        }
        stores = [
            {"name": name, "type": "filesystem", "path": str(tmp_path / name), "region": name}
            for name in ("east", "west")
        ]
        document = plan_document(tmp_path, stores, sources=[source], **(plan_extra or {}))
        plan = load(document)
        plan_file = tmp_path / f"plan-{suffix}.yaml"
        import yaml

        plan_file.write_text(yaml.safe_dump(document, sort_keys=False))
        catalog_url = f"sqlite:///{tmp_path / f'catalog-{suffix}.db'}"
        catalog = Catalog.open(catalog_url)
        setup = SqliteSetup(
            plan,
            open_resources(plan, catalog),
            catalog,
            database,
            spool,
            tmp_path,
            plan_file,
            catalog_url,
        )
        made.append(setup)
        return setup

    yield build
    for setup in made:
        setup.catalog.close()


@contextlib.contextmanager
def writing(writer: Writer) -> Iterator[Writer]:
    writer.start()
    try:
        yield writer
    finally:
        writer.halt()
