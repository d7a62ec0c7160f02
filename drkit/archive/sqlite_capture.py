"""``drkit archive`` for a SQLite source: continuous capture of its write-ahead log.

No receiver process: every round the archiver reads the committed frames SQLite appended to
``<db>-wal`` since the last round and appends them to the open capture segment in the spool
(``drkit.sources.sqlite_wal`` describes the format), stamped with the moment they were read.
The archiver then seals and ships segments like WAL or binlog files: the open segment as a
partial object every round, completed ones (past ``SEGMENT_BYTES``) once.

Nothing is missed between rounds. SQLite starts its log over (discarding frames) only after a
checkpoint copied every frame into the database, and only when no reader holds a snapshot
inside the log. The capture always holds such a read transaction (a *pin*): each round opens
the next pin before reading the log and closes the previous one after, so the log can start
over at most once per round and only over frames already read. Why: see docs/pitr.md.

A *generation* starts from a base copy of the database (SQLite's backup API, taken under the
pin) and holds every frame captured after it. A new one starts when continuity cannot be
proven: the first start, or after the archiver was down while the log started over; the
moments between the old generation's end and the new one's start are then a gap, written to
the ledger as a problem that `drkit status` shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drkit.archive.archiver import RECONCILE_EVERY, Archiver, Ledger, Shipment
from drkit.archive.objects import Kind, WalObject
from drkit.archive.sqlite_names import generation_name, parse_segment_name, segment_name
from drkit.crypto import KeyEncryptionKey
from drkit.errors import SourceError
from drkit.plan.schema import Plan, SqliteSource
from drkit.sources.sqlite import fsync_directory
from drkit.sources.sqlite_wal import (
    FRAMES,
    HEADER,
    START,
    WAL_HEADER_SIZE,
    Checksum,
    WalHeader,
    committed_frames,
    encode_record,
    header_payload,
    microseconds,
    parse_header,
    read_records,
)
from drkit.stores.base import Store

log = logging.getLogger(__name__)

#: a capture segment completes (and a new one opens) once it holds this much
SEGMENT_BYTES = 4 * 1024 * 1024
#: the capture checkpoints the log itself once it is this long: its pin keeps the
#: application's own checkpoints from ever letting the log start over
CHECKPOINT_BYTES = 4 * 1024 * 1024
#: ... or once it holds this many frames, whichever comes first: half of SQLite's default
#: ``wal_autocheckpoint`` (1,000 pages), so the application's own checkpoints do not run
#: while the capture keeps up, and an archiver restarted after a crash finds the log not
#: started over unless the application wrote some 500 pages meanwhile
CHECKPOINT_FRAMES = 500
HOLD_WRITES_SECONDS = 0.5
#: after its own checkpoint, how long the capture waits for the log to start over
RESTART_WAIT_SECONDS = 0.5
RESTART_POLL_SECONDS = 0.005
SEGMENT_SUFFIX = ".sqlwal"
BASE_SUFFIX = ".base"
BASE_PARTIAL = ".base-partial"
HEARTBEAT_TABLE = "drkit_heartbeat"
HEARTBEAT_KEEP = timedelta(days=1)
BUSY_MILLISECONDS = 2000


class SqliteCapture:
    """Reads a SQLite database's committed WAL frames into capture segments in the spool.
    Its ``flush_position`` (one capture) is the archiver's proof: every transaction committed
    before the moment it returns is in the spool, up to the record at that position."""

    def __init__(
        self,
        source: SqliteSource,
        spool: Path,
        *,
        on_gap: Callable[[str, str], None] = lambda name, text: None,
    ):
        self.source = source
        self.path = Path(source.path)
        self.spool = spool
        self.on_gap = on_gap
        self.generation: str | None = None
        self.number = 0
        self.header: WalHeader | None = None
        self.offset = WAL_HEADER_SIZE
        self.running: Checksum = (0, 0)
        self.last_position = 0  # µs stamp of the newest record written
        #: the read transaction that keeps SQLite from starting its log over unread
        self.pin: sqlite3.Connection | None = None
        #: a pin has been held without a break since the last read of the log
        self.continuous = False
        self._writer: sqlite3.Connection | None = None
        self._heartbeat_ready = False

    # --- resuming -------------------------------------------------------------------------

    def resume(self, known_bases: set[str]) -> None:
        """Continue the newest generation the spool holds a segment of (its base in the spool
        or, per ``known_bases``, in a store); otherwise the first round starts one."""
        segments = sorted(self.spool.glob(f"*{SEGMENT_SUFFIX}"))
        if not segments:
            return
        newest = segments[-1]
        found = parse_segment_name(newest.name[: -len(SEGMENT_SUFFIX)])
        if found is None:
            return
        generation, number = found
        has_base = (self.spool / f"{generation}{BASE_SUFFIX}").exists()
        if not has_base and generation not in known_bases:
            return
        data = newest.read_bytes()
        records = list(read_records(data))
        if not records:
            return
        with open(newest, "r+b") as file:  # a record torn by a kill goes
            file.truncate(records[-1].end)
        self.generation, self.number = generation, number
        for record in records:
            if record.kind == HEADER:
                self.header, self.offset, self.running = (
                    record.header,
                    record.offset,
                    record.running,
                )
            elif record.kind == FRAMES:
                self.offset = record.offset + len(record.payload)
                last = record.payload[-self._frame_size() :]  # its header ends the chain
                self.running = struct.unpack(">2I", last[16:24])  # type: ignore[assignment]
        self.last_position = microseconds(records[-1].time)
        log.info("resuming capture of %s in generation %s", self.source.name, generation)

    def _frame_size(self) -> int:
        assert self.header is not None
        return self.header.frame_size

    # --- one capture ----------------------------------------------------------------------

    def flush_position(self) -> tuple[int, datetime] | None:
        """Capture what SQLite committed since the last call: (position, moment) where every
        transaction committed before ``moment`` is in the spool up to ``position``; None when
        the database could not be read this round. Once the log is long, the capture also
        checkpoints it (see ``_checkpoint``), then follows the log into its new incarnation
        as soon as the application's next write starts it (see ``_wait_for_restart``)."""
        found, checkpointed = self._flush_once()
        if checkpointed and self._wait_for_restart():
            again, _ = self._flush_once(may_checkpoint=False)
            found = again or found
        return found

    def _flush_once(
        self, *, may_checkpoint: bool = True
    ) -> tuple[tuple[int, datetime] | None, bool]:
        """One capture: what ``flush_position`` returns, and whether it checkpointed the log.
        It checkpoints only a log it found long: never the new incarnation it just followed
        (its own last checkpoint began it), which would let the log start over again, at the
        next write, with no one following."""
        long_before = may_checkpoint and self.offset >= self._checkpoint_at()
        writer = self._hold_writes() if long_before else None
        checkpointed = False
        try:
            try:
                pin = self._open_pin()
            except sqlite3.Error as error:
                log.warning("cannot read sqlite source %s: %s", self.source.name, error)
                return None, False
            try:
                moment = self._capture(pin)
            except (sqlite3.Error, OSError) as error:  # busy, a full spool: the old pin holds
                self._close(pin)
                log.warning("cannot capture sqlite source %s: %s", self.source.name, error)
                return None, False
            except BaseException:
                self._close(pin)
                raise
            previous, self.pin = self.pin, pin
            if previous is not None:
                self._close(previous)
            self.continuous = True
            if writer is not None and moment is not None and self.offset >= self._checkpoint_at():
                self._checkpoint()
                checkpointed = True
        finally:
            if writer is not None:
                self._close(writer)  # rolls back: it wrote nothing
        return ((self.last_position, moment) if moment is not None else None), checkpointed

    def _wait_for_restart(self) -> bool:
        """After the capture's own checkpoint, the application's next write starts the log
        over. Until the capture has read the new incarnation's header, an archiver killed and
        restarted cannot tell that start from one after writes it never saw, and reports a
        gap; so wait a moment (a busy application writes within milliseconds) and follow at
        once. True when the log started over."""
        deadline = time.monotonic() + RESTART_WAIT_SECONDS
        while time.monotonic() < deadline:
            try:
                with open(f"{self.path}-wal", "rb") as file:
                    header = parse_header(file.read(WAL_HEADER_SIZE))
            except FileNotFoundError:
                header = None
            current = self.header
            if header is not None and current is not None and header.salts != current.salts:
                return True
            time.sleep(RESTART_POLL_SECONDS)
        return False

    def _checkpoint_at(self) -> int:
        """The log offset past which the capture checkpoints the log."""
        if self.header is None:
            return CHECKPOINT_BYTES
        return min(CHECKPOINT_BYTES, WAL_HEADER_SIZE + CHECKPOINT_FRAMES * self._frame_size())

    def _hold_writes(self) -> sqlite3.Connection | None:
        """The database's write lock (writers wait), or None when it is busy now."""
        writer = sqlite3.connect(self.path, isolation_level=None, timeout=HOLD_WRITES_SECONDS)
        try:
            writer.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            self._close(writer)
            return None
        return writer

    def _checkpoint(self) -> None:
        """Copy the log into the database so the next writer starts it over, losing nothing:
        this runs holding the write lock, right after a capture read the whole log (no frame
        can be added before the lock goes), and with no pin of ours (a pin inside the log
        would stop the checkpoint there). A new pin is taken before the lock goes: taken over
        a fully copied log it holds SQLite's read-mark 0, which stops any further checkpoint,
        so the log can start over once (over frames captured) and not again until the next
        round."""
        if self.pin is not None:
            self._close(self.pin)
            self.pin = None
        checkpointer = sqlite3.connect(self.path, isolation_level=None, timeout=HOLD_WRITES_SECONDS)
        try:
            busy, frames, copied = checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            log.debug("checkpoint of %s: busy %s, %s of %s frames", self.path, busy, copied, frames)
        except sqlite3.Error as error:
            log.warning("checkpoint of %s failed: %s", self.path, error)
        finally:
            self._close(checkpointer)
        try:
            self.pin = self._open_pin()
        except sqlite3.Error as error:  # continuity is not proven from here: next round says
            log.warning(
                "cannot pin sqlite source %s after a checkpoint: %s", self.source.name, error
            )
            self.continuous = False

    def _open_pin(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise sqlite3.OperationalError(f"{self.path} does not exist")
        pin = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_MILLISECONDS / 1000)
        try:
            mode = str(pin.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":
                raise SourceError(
                    f"sqlite source {self.source.name} is in journal_mode {mode}, not wal: "
                    "there is no write-ahead log to capture",
                    hint=f"switch it once with: sqlite3 {self.path} 'PRAGMA journal_mode=WAL'",
                )
            pin.execute("BEGIN")
            pin.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except BaseException:
            pin.close()
            raise
        return pin

    @staticmethod
    def _close(pin: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            pin.close()

    def _read_log(self) -> bytes:
        try:
            return Path(f"{self.path}-wal").read_bytes()
        except FileNotFoundError:
            return b""

    def _capture(self, pin: sqlite3.Connection) -> datetime | None:
        if self.generation is None:
            return self._new_generation(pin, None)
        wal = self._read_log()
        moment = datetime.now(UTC)  # after the read: all it holds committed before
        header = parse_header(wal)
        if header is None:
            if len(wal) >= WAL_HEADER_SIZE:
                return None  # the header is being rewritten at this instant: next round
            if self.header is None:
                return moment  # no log yet: nothing committed since the base copy
            return self._new_generation(pin, "the write-ahead log was removed")
        if self.header is not None and header.salts == self.header.salts:
            self._append_frames(header, wal, moment)
            return moment
        # the log started over (or began): continuous only when a pin held all along
        if not self.continuous:
            return self._new_generation(
                pin, "the write-ahead log started over while drkit was not capturing"
            )
        if self.header is not None and header.checkpoint != self.header.checkpoint + 1:
            return self._new_generation(pin, "the write-ahead log skipped an incarnation")
        self._append(
            encode_record(HEADER, moment, WAL_HEADER_SIZE, header_payload(header, header.checksum))
        )
        self.header, self.offset, self.running = header, WAL_HEADER_SIZE, header.checksum
        self._append_frames(header, wal, moment)
        return moment

    def _append_frames(self, header: WalHeader, wal: bytes, moment: datetime) -> None:
        found = committed_frames(header, wal, self.offset, self.running)
        if not found.data:
            return
        self._append(encode_record(FRAMES, moment, self.offset, found.data))
        self.offset, self.running = found.end, found.checksum
        if self._segment_path().stat().st_size >= SEGMENT_BYTES:
            assert self.header is not None
            continuation = header_payload(self.header, self.running)
            self._append(encode_record(HEADER, moment, self.offset, continuation), self.number + 1)
            self.number += 1

    def _segment_path(self, number: int | None = None) -> Path:
        assert self.generation is not None
        name = segment_name(self.generation, self.number if number is None else number)
        return self.spool / f"{name}{SEGMENT_SUFFIX}"

    def _append(self, record: bytes, number: int | None = None) -> None:
        """Append one whole record durably, or nothing (a full disk leaves no torn record
        for the next one to follow)."""
        with open(self._segment_path(number), "ab") as file:
            size = file.tell()
            try:
                file.write(record)
                file.flush()
                os.fsync(file.fileno())
            except BaseException:
                with contextlib.suppress(OSError):
                    file.truncate(size)
                raise
        stamp = struct.unpack_from(">Q", record, 5)[0]
        self.last_position = max(self.last_position, stamp)

    def _new_generation(self, pin: sqlite3.Connection, why: str | None) -> datetime:
        """A base copy under the pin, then the whole current log: a new generation."""
        ended = self.last_position
        partial = self.spool / BASE_PARTIAL
        partial.unlink(missing_ok=True)
        copy = sqlite3.connect(partial)
        try:
            pin.backup(copy, pages=-1)
        finally:
            copy.close()
        with open(partial, "rb+") as file:
            os.fsync(file.fileno())
        wal = self._read_log()  # after the copy: the frames replayed over it reach past it
        moment = datetime.now(UTC)
        generation = generation_name(moment)
        self.generation, self.number = generation, 1
        self.header, self.offset, self.running = None, WAL_HEADER_SIZE, (0, 0)
        try:
            self._append(encode_record(START, moment, 0))
            header = parse_header(wal)
            if header is not None:
                self.header, self.running = header, header.checksum
                self._append(
                    encode_record(HEADER, moment, self.offset, header_payload(header, self.running))
                )
                self._append_frames(header, wal, moment)
            os.replace(partial, self.spool / f"{generation}{BASE_SUFFIX}")
            fsync_directory(self.spool)
        except BaseException:
            self.generation = None  # half made (a full disk): the next round starts afresh
            raise
        if why is not None:
            since = (
                f" since {datetime.fromtimestamp(ended / 1e6, UTC):%Y-%m-%d %H:%M:%S} UTC"
                if ended
                else ""
            )
            text = f"gap: {why}; moments{since} up to {moment:%Y-%m-%d %H:%M:%S} UTC cannot be restored (new generation {generation})"
            log.error("sqlite source %s: %s", self.source.name, text)
            self.on_gap(f"gap-{generation}", text)
        log.info("sqlite source %s: generation %s starts", self.source.name, generation)
        return moment

    # --- heartbeat ------------------------------------------------------------------------

    def write_heartbeat(self) -> bool:
        """Insert one row into drkit_heartbeat (created the first time), drop old ones."""
        try:
            if self._writer is None:
                self._writer = sqlite3.connect(
                    self.path, isolation_level=None, timeout=BUSY_MILLISECONDS / 1000
                )
            writer = self._writer
            if not self._heartbeat_ready:
                writer.execute(
                    f"CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE} "
                    "(id INTEGER PRIMARY KEY, at TEXT NOT NULL)"
                )
                oldest = (datetime.now(UTC) - HEARTBEAT_KEEP).isoformat()
                writer.execute(f"DELETE FROM {HEARTBEAT_TABLE} WHERE at < ?", (oldest,))
                self._heartbeat_ready = True
            writer.execute(
                f"INSERT INTO {HEARTBEAT_TABLE} (at) VALUES (?)", (datetime.now(UTC).isoformat(),)
            )
        except sqlite3.Error as error:
            log.debug("heartbeat into %s failed: %s", self.path, error)
            return False
        return True

    def close(self) -> None:
        for connection in (self.pin, self._writer):
            if connection is not None:
                self._close(connection)
        self.pin = self._writer = None


class SqliteArchiver(Archiver):
    """Archives one SQLite source's write-ahead log; ``run()`` as for WAL."""

    receiver_name = "capture"
    receiver_program = "-"  # no receiver process

    def __init__(
        self,
        plan: Plan,
        source: SqliteSource,
        stores: Sequence[Store],
        keys: Sequence[KeyEncryptionKey],
        spool: Path,
        *,
        ledger: Ledger,
        reconcile_every: float = RECONCILE_EVERY,
    ):
        assert source.pitr is not None
        self.sqlite_source = source
        self.capture = SqliteCapture(source, spool, on_gap=self._record_problem)
        self.probe = self.capture
        self._setup(plan, source.name, source.pitr, stores, keys, spool, ledger, reconcile_every)

    def open(self) -> None:
        super().open()
        rows = self.ledger.list_wal_objects(self.plan.name, source=self.source_name)
        self.capture.resume({row.name for row in rows if row.kind == "base"})

    def _create_slot(self) -> None:
        """Nothing to create: the capture reads the database's own log."""

    def _restart_receiver(self) -> None:
        """No receiver: the capture runs inside each round."""

    def _received_position(self) -> None:
        return None

    def _collect(self) -> list[Shipment]:
        """Base copies, completed segments, and the open segment as a partial object."""
        shipments = []
        for path in sorted(self.spool.glob(f"*{BASE_SUFFIX}")):
            with contextlib.suppress(FileNotFoundError):
                shipments.append(
                    self._seal(path, WalObject("base", path.name[: -len(BASE_SUFFIX)]))
                )
        segments = sorted(self.spool.glob(f"*{SEGMENT_SUFFIX}"))
        for index, path in enumerate(segments):
            kind: Kind = "partial" if index == len(segments) - 1 else "segment"
            with contextlib.suppress(FileNotFoundError):
                shipments.append(
                    self._seal(path, WalObject(kind, path.name[: -len(SEGMENT_SUFFIX)]))
                )
        return shipments

    def _measure(self, wal_object: WalObject, data: bytes) -> tuple[int, int]:
        """A segment reaches the stamp of its newest record (the capture's position)."""
        if wal_object.kind == "base":
            return len(data), 0
        newest = 0
        for record in read_records(data):
            newest = microseconds(record.time)
        return len(data), newest
