"""The server side of continuous WAL archiving for a PostgreSQL source with ``pitr:``:
``pg_receivewal`` commands (pure), and a small connection that reads the server's flush
position (the proof that shipped WAL holds everything up to a moment) and writes the opt-in
heartbeat row."""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import datetime

import psycopg

from drkit.execute import Command
from drkit.plan.schema import PostgresqlSource
from drkit.secrets import Secret, SecretRef
from drkit.sources.postgresql import connect, password_file, tool_environment
from drkit.sources.urls import DatabaseUrl, parse_database_url

log = logging.getLogger(__name__)

HEARTBEAT_TABLE = "drkit_heartbeat"
HEARTBEAT_KEEP = "7 days"


def default_slot(plan: str, source: str) -> str:
    """``drkit_<plan>_<source>``, made a valid slot name (a-z, 0-9, _; at most 63)."""
    return re.sub(r"[^a-z0-9_]", "_", f"drkit_{plan}_{source}".lower())[:63]


def slot_for(plan: str, spec: PostgresqlSource) -> str:
    assert spec.pitr is not None
    return spec.pitr.slot or default_slot(plan, spec.name)


def replication_url(spec: PostgresqlSource) -> DatabaseUrl:
    assert spec.pitr is not None
    return parse_database_url(spec.pitr.replication_url or spec.url)


def source_password(spec: PostgresqlSource) -> Secret | None:
    return SecretRef(spec.password).resolve() if spec.password else None


def make_create_slot_command(
    url: DatabaseUrl, slot: str, *, password: Secret | None, program: str
) -> Command:
    """Create the physical replication slot unless it exists."""
    return Command(
        argv=(
            program,
            f"--dbname={url}",
            f"--slot={slot}",
            "--create-slot",
            "--if-not-exists",
            "--no-password",
        ),
        env=tool_environment(),
        secret_files=password_file(password),
    )


def make_receive_command(
    url: DatabaseUrl, slot: str, spool: str, *, password: Secret | None, program: str
) -> Command:
    """pg_receivewal streaming into ``spool``: every write flushed at once (--synchronous),
    so what drkit reads there is what the slot acknowledged; drkit restarts it itself."""
    return Command(
        argv=(
            program,
            f"--dbname={url}",
            f"--directory={spool}",
            f"--slot={slot}",
            "--synchronous",
            "--no-loop",
            "--no-password",
            "--status-interval=1",
        ),
        env=tool_environment(),
        secret_files=password_file(password),
    )


class ServerProbe:
    """A plain connection to the source, reopened when it breaks. Every call is best effort:
    None (and a debug line) when the server cannot answer."""

    def __init__(self, spec: PostgresqlSource):
        self.url = parse_database_url(spec.url)
        self.password = source_password(spec)
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._heartbeat_ready = False

    def _connected(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._connection is None or self._connection.closed:
            self._connection = connect(self.url, self.password)
            self._heartbeat_ready = False
        return self._connection

    def flush_position(self) -> tuple[int, datetime] | None:
        """The server's WAL flush position and its clock at that moment."""
        try:
            row = (
                self._connected()
                .execute("SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn, clock_timestamp()")
                .fetchone()
            )
        except Exception as error:
            self._drop(error)
            return None
        if row is None:
            return None
        return int(str(row[0])), row[1]  # type: ignore[return-value]

    def received_position(self, slot: str) -> int | None:
        """How far the receiver streaming through ``slot`` has flushed WAL to its disk (a
        physical slot's ``restart_lsn`` is the flush position its receiver reported)."""
        try:
            row = (
                self._connected()
                .execute(
                    "SELECT restart_lsn - '0/0'::pg_lsn FROM pg_replication_slots "
                    "WHERE slot_name = %s",
                    (slot,),
                )
                .fetchone()
            )
        except Exception as error:
            self._drop(error)
            return None
        if row is None or row[0] is None:
            return None
        return int(str(row[0]))

    def write_heartbeat(self) -> bool:
        """Insert one heartbeat row (creating the table the first time), drop old ones."""
        try:
            connection = self._connected()
            if not self._heartbeat_ready:
                connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE} (id bigserial PRIMARY KEY, "
                    "at timestamptz NOT NULL DEFAULT clock_timestamp())"
                )
                connection.execute(
                    f"DELETE FROM {HEARTBEAT_TABLE} "
                    f"WHERE at < clock_timestamp() - interval '{HEARTBEAT_KEEP}'"
                )
                self._heartbeat_ready = True
            connection.execute(f"INSERT INTO {HEARTBEAT_TABLE} DEFAULT VALUES")
        except Exception as error:
            self._drop(error)
            return False
        return True

    def _drop(self, error: BaseException) -> None:
        log.debug("source server did not answer: %s", error)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
