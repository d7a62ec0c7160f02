"""Binary log archiving against a MariaDB server the tests start with log_bin on: dumps name
their binlog position, `drkit archive` ships every binlog file (and the one being written)
byte for byte to every store, status shows each store's window and the RPO, and a binlog
purged before it was archived is reported as a gap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from drkit.actions.backup import backup
from drkit.archive.ledger import binlog_store_windows
from drkit.archive.objects import WalObject, objects_from_keys, open_wal, wal_prefix
from drkit.monitoring.metrics import collect_metrics, render_metrics
from drkit.report.windows import pitr_status
from tests.archive.conftest import BinlogSetup, running
from tests.archive.test_point_in_time import wait_for

pytestmark = pytest.mark.slow


class BinlogLoad:
    """Inserts numbered rows, one autocommit transaction each, until stopped; knows for each
    the UTC clock before it began and after its commit returned."""

    def __init__(self, setup: BinlogSetup, pause: float = 0.02):
        self.setup = setup
        self.pause = pause
        self.committed: list[tuple[int, datetime, datetime]] = []  # (row, began, committed)
        self._stop = threading.Event()
        self._held = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.setup.server.connect(self.setup.database) as connection:
            number = 0
            while not self._stop.is_set():
                if self._held.is_set():
                    time.sleep(0.01)
                    continue
                number += 1
                began = datetime.now(UTC)
                with connection.cursor() as cursor:
                    cursor.execute("INSERT INTO orders VALUES (%s, 'steady')", (number,))
                self.committed.append((number, began, datetime.now(UTC)))
                time.sleep(self.pause)

    def hold(self, seconds: float) -> tuple[datetime, datetime]:
        """No commit for ``seconds``: the stretch without commits (from, until)."""
        self._held.set()
        time.sleep(0.2)  # an insert under way commits
        held_from = datetime.now(UTC)
        time.sleep(seconds)
        held_until = datetime.now(UTC)
        self._held.clear()
        return held_from, held_until

    def __enter__(self) -> BinlogLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def window_reaches(setup: BinlogSetup, moment: datetime) -> bool:
    windows = binlog_store_windows(setup.catalog, setup.plan, setup.source)
    return all(w.end is not None and w.end >= moment for w in windows)


def stored_binlogs(setup: BinlogSetup, store_name: str) -> dict[str, bytes]:
    """Every binlog file a store holds, opened (a partial one only when no complete one)."""
    [store] = [s for s in setup.resources.stores if s.name == store_name]
    keys = store.list(wal_prefix(setup.plan.name, "ledger"))
    found: dict[str, bytes] = {}
    for item in sorted(objects_from_keys(setup.plan.name, "ledger", keys), key=lambda o: o.kind):
        if item.kind == "partial" and item.name in found:
            continue
        chunks = store.get(WalObject(item.kind, item.name).key(setup.plan.name, "ledger"))
        found[item.name] = open_wal(chunks, item, setup.plan.name, "ledger", setup.resources.keys)
    return found


#: the flags of a binlog file's first event (after the 4-byte magic and 17 header bytes):
#: the server sets LOG_EVENT_BINLOG_IN_USE_F (1) in the file it is writing; copies have it clear
FLAGS_OFFSET = 4 + 17


def server_binlogs(setup: BinlogSetup) -> dict[str, bytes]:
    """The server's binlog files as its datadir holds them (the in-use flag cleared)."""
    names = [str(row[0]) for row in setup.server.execute("SHOW BINARY LOGS")]
    found = {}
    for name in names:
        data = bytearray((setup.server.data / name).read_bytes())
        data[FLAGS_OFFSET] &= 0xFE
        found[name] = bytes(data)
    return found


def test_dumps_name_their_binlog_position_and_the_stores_hold_every_binlog_byte(
    binlog_setup: Callable[..., BinlogSetup],
) -> None:
    setup = binlog_setup()
    setup.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    with running(setup.archiver()), BinlogLoad(setup) as load:
        wait_for(lambda: any(setup.spool.glob("mariadb-bin.*")), "mariadb-binlog to stream")
        result = backup(setup.resources)
        assert result.outcome.value == "ok", result.error
        setup.server.execute("FLUSH BINARY LOGS")  # a file completes under the load
        time.sleep(2)
        last = load.committed[-1][2]
        wait_for(lambda: window_reaches(setup, last), "the window to reach the load")
        statuses = pitr_status(setup.catalog, setup.plan, datetime.now(UTC))
    [snapshot] = setup.catalog.list_snapshots(setup.plan.name, status="complete")
    [artifact] = snapshot.artifacts
    binlog = artifact.fingerprint["binlog"]
    assert binlog["file"].startswith("mariadb-bin.") and binlog["position"] > 0
    assert binlog["gtid"].startswith("0-1-")
    [status] = statuses
    assert status.source == "ledger" and status.breaches == []
    assert [w.store for w in status.windows] == ["east", "west"]
    for window in status.windows:
        assert window.problems == [] and window.base_backups == [snapshot.id]
        assert window.start is not None and window.end is not None and window.end >= last
    assert status.rpo_seconds is not None
    metrics = render_metrics(collect_metrics(setup.catalog, [setup.plan]))
    for store in ("east", "west"):
        labels = f'plan="test-api",source="ledger",store="{store}"'
        assert f"drkit_wal_window_problems{{{labels}}} 0.0" in metrics
        assert f"drkit_wal_archive_lag_seconds{{{labels}}}" in metrics
        assert f"drkit_wal_last_archived_lsn_bytes{{{labels}}}" not in metrics
    server = server_binlogs(setup)
    for store in ("east", "west"):
        held = stored_binlogs(setup, store)
        for name, data in server.items():
            if name >= binlog["file"]:
                assert held.get(name) == data, f"{store} {name}"


STORES = ("east", "west")


def test_a_binlog_purged_before_it_was_archived_is_reported_as_a_gap(
    binlog_setup: Callable[..., BinlogSetup],
) -> None:
    setup = binlog_setup()
    setup.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    with running(setup.archiver()):
        wait_for(lambda: any(setup.spool.glob("mariadb-bin.*")), "mariadb-binlog to stream")
        assert backup(setup.resources).outcome.value == "ok"
        moment = datetime.now(UTC)
        wait_for(lambda: window_reaches(setup, moment), "the window to reach the backup")
    # while no archiver runs, the server writes two more files and purges them
    for number in (1, 2, 3):
        setup.execute(f"INSERT INTO orders VALUES ({number}, 'lost')")
        setup.server.execute("FLUSH BINARY LOGS")
    [(current, _, *_)] = setup.server.execute("SHOW MASTER STATUS")
    setup.server.execute(f"PURGE BINARY LOGS TO '{current}'")
    archiver = setup.archiver()
    archiver.open()

    def problems(store: str) -> list[str]:
        [status] = pitr_status(setup.catalog, setup.plan, datetime.now(UTC))
        return [b for b in status.breaches if b.startswith(f"ledger@{store}: ")]

    def shipped_to_both() -> bool:
        archiver.ship_round()  # a store still busy with a round catches up in a later one
        return all(any("gap: binlog" in p for p in problems(store)) for store in STORES)

    try:
        archiver._restart_receiver()
        wait_for(lambda: (setup.spool / str(current)).exists(), "mariadb-binlog to stream")
        # a file after the purged ones completes: the purged ones are then a gap in between
        setup.server.execute("FLUSH BINARY LOGS")
        deadline = time.monotonic() + 30
        while not shipped_to_both() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        archiver.close()
    for store in STORES:
        found = problems(store)
        assert any("purged by the server before they were archived" in p for p in found), found
        assert any("gap: binlog mariadb-bin." in p for p in found), found


def test_a_server_whose_numbering_restarted_stops_archiving_and_is_reported(
    binlog_setup: Callable[..., BinlogSetup],
) -> None:
    setup = binlog_setup()
    setup.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    for _ in range(2):
        setup.server.execute("FLUSH BINARY LOGS")  # the archive then holds a file above 000001
    with running(setup.archiver()):
        wait_for(lambda: any(setup.spool.glob("mariadb-bin.*")), "mariadb-binlog to stream")
        assert backup(setup.resources).outcome.value == "ok"
        moment = datetime.now(UTC)
        wait_for(lambda: window_reaches(setup, moment), "the window to reach the backup")
    stored = stored_binlogs(setup, "east")
    setup.server.execute("RESET MASTER")  # what a switch to a new server looks like
    setup.execute("INSERT INTO orders VALUES (1, 'on the new numbering')")
    archiver = setup.archiver()
    archiver.open()
    try:
        archiver._restart_receiver()
        assert archiver.receiver is None and archiver.blocked is not None
        archiver.ship_round()
    finally:
        archiver.close()
    assert stored_binlogs(setup, "east") == stored  # nothing overwritten
    [status] = pitr_status(setup.catalog, setup.plan, datetime.now(UTC))
    assert any("restarted numbering" in breach for breach in status.breaches)
