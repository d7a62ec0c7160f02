"""The server side of continuous binary log archiving for a MariaDB/MySQL source with
``pitr:``: the ``mariadb-binlog`` commands (pure), binlog file names and positions, and a
small connection that reads the server's binlog position and clock (the proof that shipped
binlog holds everything up to a moment), lists its binlog files and writes the opt-in
heartbeat row."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drkit.execute import Command
from drkit.plan.schema import MysqlSource
from drkit.secrets import Secret, SecretRef
from drkit.sources.mysql import connect, connection_arguments, fetch_all
from drkit.sources.urls import parse_database_url

log = logging.getLogger(__name__)

HEARTBEAT_TABLE = "drkit_heartbeat"
HEARTBEAT_KEEP_DAYS = 7
BINLOG_NAME = re.compile(r"^(?P<base>[A-Za-z0-9_.-]+)\.(?P<number>\d{6,})$")
#: a binlog position as one integer: file number in the high bits, byte offset in the low
OFFSET_BITS = 32


@dataclass(frozen=True, order=True)
class BinlogFile:
    """``mariadb-bin.000042``: the base name and the file number."""

    number: int
    base: str

    @property
    def name(self) -> str:
        return f"{self.base}.{self.number:06d}"

    def position(self, offset: int) -> int:
        return (self.number << OFFSET_BITS) | offset


def parse_binlog_name(name: str) -> BinlogFile | None:
    match = BINLOG_NAME.match(name)
    return BinlogFile(int(match["number"]), match["base"]) if match else None


def is_binlog_name(name: str) -> bool:
    return parse_binlog_name(name) is not None


def archiver_server_id(plan: str, source: str) -> int:
    """The server id ``mariadb-binlog --stop-never`` registers with: stable per source, high
    in the 32-bit range where replicas' ids rarely are (two with the same id evict each other)."""
    digest = hashlib.sha256(f"{plan}/{source}".encode()).digest()
    return (1 << 31) + int.from_bytes(digest[:4], "big") % (1 << 30)


def make_binlog_receive_command(
    spec: MysqlSource,
    first_file: str,
    spool: Path,
    *,
    server_id: int,
    option_file: Path | None,
    program: str = "mariadb-binlog",
) -> Command:
    """mariadb-binlog copying the server's binlog files byte for byte into ``spool`` from the
    start of ``first_file`` on, and waiting for more (each file under its own name)."""
    url = parse_database_url(spec.url)
    extra = [f"--defaults-extra-file={option_file}"] if option_file is not None else []
    return Command(
        argv=(
            program,
            *extra,  # must come first
            "--read-from-remote-server",
            *connection_arguments(url),
            "--raw",
            "--stop-never",
            f"--stop-never-slave-server-id={server_id}",
            f"--result-file={spool}/",  # with --raw, a prefix for the server's file names
            first_file,
        )
    )


def make_replay_command(
    files: Sequence[Path],
    *,
    start_position: int,
    stop: datetime | None,
    database: str,
    rename_to: str,
    program: str = "mariadb-binlog",
    stop_gtid: str | None = None,
) -> Command:
    """mariadb-binlog printing, as SQL, the events of ``database`` in ``files`` from
    ``start_position`` of the first file up to (not including) the first event stamped at or
    after ``stop``, or up to and including the transaction ``stop_gtid``, renamed to
    database ``rename_to``."""
    until = [f"--stop-datetime={stop.astimezone(UTC):%Y-%m-%d %H:%M:%S}"] if stop else []
    if stop_gtid is not None:
        until = [f"--stop-position={stop_gtid}"]
    return Command(
        argv=(
            program,
            f"--start-position={start_position}",
            *until,
            f"--database={database}",
            f"--rewrite-db={database}->{rename_to}",
            *(str(path) for path in files),
        ),
        env={"TZ": "UTC"},  # --stop-datetime is read in the local time zone
    )


GTID_PATTERN = re.compile(r"^(\d{1,10})-(\d{1,10})-(\d{1,20})$")


def parse_gtid(text: str) -> tuple[int, int, int] | None:
    """(domain, server, sequence) of a MariaDB GTID such as ``0-1-2041``, or None."""
    found = GTID_PATTERN.match(text.strip())
    return None if found is None else (int(found[1]), int(found[2]), int(found[3]))


def gtid_sequence(position: str, domain: int) -> int | None:
    """The sequence number a GTID position (``gtid_binlog_pos``, comma-separated) reaches in
    ``domain``; None when it names no transaction of that domain."""
    for part in position.split(","):
        found = parse_gtid(part) if part.strip() else None
        if found is not None and found[0] == domain:
            return found[2]
    return None


def source_password(spec: MysqlSource) -> Secret | None:
    return SecretRef(spec.password).resolve() if spec.password else None


class BinlogProbe:
    """A plain connection to the source, reopened when it breaks. Every call is best effort:
    None (and a debug line) when the server cannot answer."""

    def __init__(self, spec: MysqlSource):
        self.url = parse_database_url(spec.url)
        self.password = source_password(spec)
        self._connection: Any = None
        self._heartbeat_ready = False

    def _connected(self) -> Any:
        if self._connection is None:
            self._connection = connect(self.url, self.password)
            self._heartbeat_ready = False
        return self._connection

    def flush_position(self) -> tuple[int, datetime] | None:
        """The server's binlog position (as one integer) and its clock at that moment."""
        try:
            connection = self._connected()
            [(now,)] = fetch_all(connection, "SELECT UTC_TIMESTAMP(6)")
            rows = fetch_all(connection, "SHOW MASTER STATUS")
        except Exception as error:
            self._drop(error)
            return None
        current = parse_binlog_name(str(rows[0][0])) if rows else None
        if current is None:
            return None
        return current.position(int(rows[0][1])), now.replace(tzinfo=UTC)

    def binlog_files(self) -> list[BinlogFile] | None:
        """The binlog files the server still has, oldest first."""
        try:
            rows = fetch_all(self._connected(), "SHOW BINARY LOGS")
        except Exception as error:
            self._drop(error)
            return None
        return sorted(f for row in rows if (f := parse_binlog_name(str(row[0]))) is not None)

    def write_heartbeat(self) -> bool:
        """Insert one heartbeat row (creating the table the first time, and dropping rows
        older than a week then)."""
        try:
            connection = self._connected()
            with connection.cursor() as cursor:
                if not self._heartbeat_ready:
                    cursor.execute(
                        f"CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE} (id BIGINT AUTO_INCREMENT "
                        "PRIMARY KEY, at DATETIME(6) NOT NULL DEFAULT UTC_TIMESTAMP(6))"
                    )
                    cursor.execute(
                        f"DELETE FROM {HEARTBEAT_TABLE} "
                        f"WHERE at < UTC_TIMESTAMP(6) - INTERVAL {HEARTBEAT_KEEP_DAYS} DAY"
                    )
                    self._heartbeat_ready = True
                cursor.execute(f"INSERT INTO {HEARTBEAT_TABLE} () VALUES ()")
        except Exception as error:
            self._drop(error)
            return False
        return True

    def _drop(self, error: BaseException) -> None:
        log.debug("source server did not answer: %s", error)
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
