"""``drkit archive`` for a MariaDB/MySQL source: continuous binary log archiving.

``mariadb-binlog --read-from-remote-server --raw --stop-never`` registers with the server as
a replica and copies every binlog file byte for byte into the spool, waiting for more. Every
round the archiver (the same shipping, ledger and spool rules as for WAL, see ``archiver``)
reads the server's binlog position and clock, seals each completed binlog file once and puts
it in every store lacking it, and ships the file the server is writing as a partial object,
so the off-host RPO is a round.

Resuming: after any restart mariadb-binlog starts again at the newest file the spool or the
ledger knows (rewriting it from its start: no gap, nothing shipped twice differs). Gaps the
archiver cannot close are written to the ledger as problems that ``drkit status`` shows:
files purged by the server before they were archived, and a server whose numbering restarted
(a switch to another server, RESET MASTER), where archiving stops rather than overwrite
archived files of the same names.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from drkit.archive.archiver import (
    RECEIVER_PID_FILE,
    RECONCILE_EVERY,
    Archiver,
    Ledger,
    Shipment,
)
from drkit.archive.objects import WalObject
from drkit.crypto import KeyEncryptionKey
from drkit.errors import ToolError
from drkit.execute import Process
from drkit.plan.schema import MysqlSource, Plan
from drkit.sources.binlog_stream import (
    BinlogFile,
    BinlogProbe,
    archiver_server_id,
    make_binlog_receive_command,
    parse_binlog_name,
    source_password,
)
from drkit.sources.mysql import OPTION_FILE, pick_program, write_option_file
from drkit.stores.base import Store

log = logging.getLogger(__name__)

BINLOG_PROGRAMS = ("mariadb-binlog", "mysqlbinlog")


class BinlogArchiver(Archiver):
    """Archives one MariaDB/MySQL source's binary log; ``run()`` as for WAL."""

    receiver_name = "mariadb-binlog"
    receiver_program = "binlog"  # mariadb-binlog or mysqlbinlog

    def __init__(
        self,
        plan: Plan,
        source: MysqlSource,
        stores: Sequence[Store],
        keys: Sequence[KeyEncryptionKey],
        spool: Path,
        *,
        ledger: Ledger,
        reconcile_every: float = RECONCILE_EVERY,
    ):
        assert source.pitr is not None
        self.binlog_source = source
        self.probe = self.binlog_probe = BinlogProbe(source)
        self._setup(plan, source.name, source.pitr, stores, keys, spool, ledger, reconcile_every)
        #: why archiving stopped (numbering restarted), or None
        self.blocked: str | None = None
        #: the most bytes of each binlog file shipped (this run or, from the ledger, before)
        self._stored_sizes: dict[str, int] = {}

    def open(self) -> None:
        super().open()
        for row in self.ledger.list_wal_objects(self.plan.name, source=self.source_name):
            if row.kind in ("segment", "partial") and row.valid_bytes:
                known = self._stored_sizes.get(row.name, 0)
                self._stored_sizes[row.name] = max(known, row.valid_bytes)

    def stop_receiver(self) -> None:
        """As for WAL; the option file holding the password goes with the receiver."""
        super().stop_receiver()
        (self.spool / OPTION_FILE).unlink(missing_ok=True)

    def _received_position(self) -> None:
        """No slot: a binlog file's size is where its events end."""
        return None

    def _create_slot(self) -> None:
        """Nothing to create: mariadb-binlog registers as a replica when it connects."""

    def _restart_receiver(self) -> None:
        self._reap_receiver()
        first = self._first_file()
        if first is None:
            return
        (self.spool / OPTION_FILE).unlink(missing_ok=True)
        password = source_password(self.binlog_source)
        command = make_binlog_receive_command(
            self.binlog_source,
            first,
            self.spool,
            server_id=archiver_server_id(self.plan.name, self.source_name),
            option_file=write_option_file(self.spool, password) if password else None,
            program=pick_program(BINLOG_PROGRAMS),
        )
        try:
            self.receiver = Process(command, stdout=False)
        except ToolError as error:
            log.warning("could not start mariadb-binlog: %s", error.message)
            return
        (self.spool / RECEIVER_PID_FILE).write_text(f"{self.receiver.pid}\n")
        log.info("mariadb-binlog streaming %s from %s into %s", self.source_name, first, self.spool)

    def _known_files(self) -> tuple[BinlogFile | None, bool]:
        """The newest binlog file the spool or the ledger knows, and whether it is complete
        in some store."""
        names = {path.name for path in self.spool.iterdir()}
        complete = set()
        for record in self.ledger.list_wal_objects(self.plan.name, source=self.source_name):
            if record.kind in ("segment", "partial"):
                names.add(record.name)
            if record.kind == "segment":
                complete.add(record.name)
        known = [found for name in names if (found := parse_binlog_name(name)) is not None]
        newest = max(known, default=None)
        return newest, newest is not None and newest.name in complete

    def _first_file(self) -> str | None:
        """Where mariadb-binlog starts: the newest file known, when the server still has it;
        else the server's oldest file after recording the gap; None when it must not start."""
        if self.blocked is not None:
            return None
        server_files = self.binlog_probe.binlog_files()
        if not server_files:
            log.warning("the server lists no binary log (log_bin off, or unreachable)")
            return None
        newest, is_complete = self._known_files()
        if newest is None or newest in server_files:
            return (newest or server_files[0]).name
        oldest = server_files[0]
        if server_files[-1].number < newest.number or oldest.base != newest.base:
            self.blocked = (
                f"the server's binary log restarted numbering at {server_files[-1].name} after "
                f"{newest.name} was archived (another server, or RESET MASTER): archiving "
                "stopped so archived files are not overwritten"
            )
            log.error("%s", self.blocked)
            self._record_problem(f"restart-{server_files[-1].name}", self.blocked)
            return None
        if oldest.number > newest.number + (1 if is_complete else 0):
            lost = (
                newest.name if not is_complete else BinlogFile(newest.number + 1, newest.base).name
            )
            problem = (
                f"binlog files from {lost} to before {oldest.name} were purged by the server "
                "before they were archived"
            )
            log.error("%s", problem)
            self._record_problem(f"purged-{lost}", problem)
        return oldest.name

    def _collect(self) -> list[Shipment]:
        """Seal every binlog file in the spool: the newest is the one being written (a
        partial object), the others are complete."""
        files = sorted(
            (found, path)
            for path in self.spool.iterdir()
            if (found := parse_binlog_name(path.name)) is not None
        )
        shipments = []
        for index, (_, path) in enumerate(files):
            wal_object = WalObject("partial" if index == len(files) - 1 else "segment", path.name)
            with contextlib.suppress(FileNotFoundError):
                shipment = self._seal(path, wal_object)
                # mariadb-binlog restarted rewrites the file from its first byte: a copy
                # shorter than one already stored would replace more binlog with less
                if shipment.valid_bytes < self._stored_sizes.get(path.name, 0):
                    continue
                self._stored_sizes[path.name] = shipment.valid_bytes
                shipments.append(shipment)
        return shipments

    def _measure(self, wal_object: WalObject, data: bytes) -> tuple[int, int]:
        binlog = parse_binlog_name(wal_object.name)
        assert binlog is not None
        return len(data), binlog.position(len(data))
