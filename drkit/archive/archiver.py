"""``drkit archive``: continuous WAL archiving of one PostgreSQL source to every store.

``pg_receivewal`` streams from a replication slot into a private spool folder and flushes every
write (so the slot only advances past WAL that is on drkit's disk). Every round (every
``ship_partial_every``), drkit:

1. reads the server's flush position and clock (the proof of what the shipped WAL covers);
2. seals each completed segment and timeline history file in the spool once and puts it in
   every store that lacks it (each store in its own thread: a slow or dead store delays no
   other), then records it in the continuity ledger;
3. seals the unfinished segment (``.partial``) when it changed and puts it too, so the
   off-host RPO is a round, not the time to fill a segment;
4. removes a completed segment from the spool only once every store holds it, or once the
   copy policy has held for ``SPOOL_GRACE`` (a store down for long must not fill the disk).

Crash safety: puts are atomic and idempotent (the same name, the same bytes), so after a
kill -9 the next start simply ships whatever the spool still holds again; the spool is only
emptied of what is already durable; pg_receivewal resumes from the spool (or the slot).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from drkit.archive.binlog_window import PROBLEM_KIND
from drkit.archive.objects import (
    WalObject,
    is_wal_store,
    objects_from_keys,
    seal_wal,
    wal_prefix,
)
from drkit.archive.walnames import (
    PARTIAL_SUFFIX,
    is_history_name,
    is_segment_name,
    parse_segment_name,
)
from drkit.catalog.wal import WalRecord
from drkit.crypto import KeyEncryptionKey
from drkit.errors import LockHeldError, ToolError, describe_failure
from drkit.execute import Process, find_program, run
from drkit.plan.schema import ContinuousArchive, Plan, PostgresqlSource
from drkit.sources.wal_stream import (
    ServerProbe,
    make_create_slot_command,
    make_receive_command,
    replication_url,
    slot_for,
    source_password,
)
from drkit.stores.base import Store

log = logging.getLogger(__name__)

SPOOL_GRACE = timedelta(minutes=15)
STORE_ROUND_TIMEOUT = 10.0
RECEIVER_RESTART_DELAY = 2.0
RECEIVER_PID_FILE = "receiver.pid"
LOCK_FILE = "archive.lock"
#: WAL records end on 8-byte boundaries: a flush position is covered by a partial segment
#: whose last non-zero byte ends within the same 8 bytes
ALIGNMENT = 8

#: how often each store's WAL listing is compared with the ledger: an object that went
#: missing is forgotten (a gap the window shows) and shipped again while the spool has it
RECONCILE_EVERY = 60.0


class Probe(Protocol):
    """The archiver's plain connection to the source server."""

    def flush_position(self) -> tuple[int, datetime] | None: ...

    def write_heartbeat(self) -> bool: ...

    def close(self) -> None: ...


class Ledger(Protocol):
    """The continuity ledger (``drkit.catalog.Catalog`` is one)."""

    def record_wal_objects(self, records: Sequence[WalRecord]) -> None: ...

    def forget_wal_objects(
        self, plan: str, source: str, store: str, kind: str, names: list[str]
    ) -> int: ...

    def list_wal_objects(
        self, plan: str, *, source: str | None = None, store: str | None = None
    ) -> list[WalRecord]: ...


@dataclass
class Shipment:
    """One WAL file sealed once, to go to the stores lacking it."""

    wal_object: WalObject
    sealed: bytes
    digest: str  # of what was sealed (the file), to tell a changed partial segment
    valid_bytes: int
    end_position: int  # WAL position up to which this file holds everything written
    path: Path | None  # the spool file, removed once durable everywhere it must be
    detail: str | None = None
    file_bytes: int = 0  # the spool file's size (a segment's size)


@dataclass
class StoreJob:
    """What one store's job did in a round."""

    records: list[WalRecord] = field(default_factory=list)
    shipped: int = 0
    error: BaseException | None = None
    #: the store's WAL objects ("kind:name") when it was listed at the end of the job
    listing: set[str] | None = None


@dataclass
class StoreState:
    """What drkit knows one store holds (digest per kind:name) and its running job."""

    store: Store
    held: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    #: the newest proven moment of each file ("kind:name"); a file holding more WAL than
    #: one proven earlier (a partial segment grown, or completed) keeps that proof
    proven: dict[str, datetime] = field(default_factory=dict)
    #: the WAL file reaching furthest that this store took (in the spool or not any more)
    newest: Shipment | None = None
    job: Future[StoreJob] | None = None
    failing_since: datetime | None = None
    last_error: str | None = None
    listed_at: float = 0.0
    #: webhooks were told this store fails (past ``stall_after``): tell them when it is back
    alerted: bool = False


@dataclass
class RoundReport:
    """What one round did, for logs, tests and metrics."""

    shipped: int = 0
    removed_from_spool: int = 0
    covered_until: datetime | None = None


class Archiver:
    """Archives one source. ``run()`` until ``stop`` is set; ``ship_round()`` for one round."""

    receiver_name = "pg_receivewal"
    #: what the command line of a receiver a killed archiver left holds
    receiver_program = "pg_receivewal"

    def __init__(
        self,
        plan: Plan,
        source: PostgresqlSource,
        stores: Sequence[Store],
        keys: Sequence[KeyEncryptionKey],
        spool: Path,
        *,
        ledger: Ledger,
        reconcile_every: float = RECONCILE_EVERY,
    ):
        assert source.pitr is not None
        self.source = source
        self.probe: Probe = ServerProbe(source)
        self._setup(plan, source.name, source.pitr, stores, keys, spool, ledger, reconcile_every)

    def _setup(
        self,
        plan: Plan,
        source_name: str,
        settings: ContinuousArchive,
        stores: Sequence[Store],
        keys: Sequence[KeyEncryptionKey],
        spool: Path,
        ledger: Ledger,
        reconcile_every: float,
    ) -> None:
        self.plan = plan
        self.source_name = source_name
        self.settings = settings
        self.keys = keys
        self.spool = spool
        self.ledger = ledger
        self.reconcile_every = reconcile_every
        self.states = [StoreState(store) for store in stores if is_wal_store(store)]
        self.receiver: Process | None = None
        self._pool = ThreadPoolExecutor(max_workers=max(2, 2 * len(self.states)))
        self._first_durable: dict[str, datetime] = {}
        self._last_heartbeat = 0.0
        self._lock_handle: int | None = None
        #: (event, outcome, summary) of gaps, a store failing past stall_after, its recovery
        self.on_event: Callable[[str, str, str], None] = lambda event, outcome, summary: None

    # --- lifecycle -----------------------------------------------------------------------

    def run(
        self, stop: threading.Event, *, on_round: Callable[[RoundReport], None] | None = None
    ) -> None:
        """Archive until ``stop`` is set: keep pg_receivewal running, ship every round."""
        self.open()
        try:
            interval = self.settings.ship_partial_every.total_seconds()
            next_start = 0.0
            while not stop.is_set():
                receiver_down = self.receiver is None or self.receiver.poll() is not None
                if receiver_down and time.monotonic() >= next_start:
                    self._restart_receiver()
                    next_start = time.monotonic() + RECEIVER_RESTART_DELAY
                self._beat()
                started = time.monotonic()
                report = self.ship_round()
                log.debug(
                    "round: %d shipped, %d left the spool, proven until %s, %.2fs",
                    report.shipped,
                    report.removed_from_spool,
                    report.covered_until,
                    time.monotonic() - started,
                )
                if on_round is not None:
                    on_round(report)
                stop.wait(interval)
            # What the server had flushed before pg_receivewal stops is proven by the last
            # round: after it stops, the server's own WAL (checkpoints) would outrun it.
            proof = self.probe.flush_position()
            time.sleep(min(interval, 1.0))
            self.stop_receiver()
            self.ship_round(proof=proof)
        finally:
            self.close()

    def open(self) -> None:
        """Lock the spool (one archiver per source), end a receiver a killed archiver left,
        create the replication slot."""
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = os.open(self.spool / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise LockHeldError(
                f"another drkit archive is running for source {self.source_name} "
                f"(spool {self.spool})",
                hint="stop it first, or let it run: one archiver per source",
            ) from None
        self._lock_handle = handle
        end_leftover_receiver(self.spool, self.receiver_program)
        self._create_slot()
        rows = self.ledger.list_wal_objects(self.plan.name, source=self.source_name)
        for state in self.states:  # proofs recorded by an earlier run still hold
            state.proven = {
                f"{row.kind}:{row.name}": row.covered_until
                for row in rows
                if row.store == state.store.name and row.covered_until is not None
            }

    def _create_slot(self) -> None:
        """The replication slot, unless the server has it (a promoted standby may not)."""
        command = make_create_slot_command(
            replication_url(self.source),
            slot_for(self.plan.name, self.source),
            password=source_password(self.source),
            program=find_program("pg_receivewal"),
        )
        run(command, timeout=60)

    def close(self) -> None:
        self.stop_receiver()
        self._pool.shutdown(wait=True, cancel_futures=False)
        self.probe.close()
        if self._lock_handle is not None:
            os.close(self._lock_handle)
            self._lock_handle = None

    def _reap_receiver(self) -> None:
        """The receiver ended: say why, forget it."""
        if self.receiver is None:
            return
        with contextlib.suppress(ToolError):
            self.receiver.finish(timeout=1)
        log.warning(
            "%s ended: %s; starting it again",
            self.receiver_name,
            self.receiver.stderr_tail.strip().splitlines()[-1:] or "",
        )
        self.receiver = None

    def _restart_receiver(self) -> None:
        self._reap_receiver()
        command = make_receive_command(
            replication_url(self.source),
            slot_for(self.plan.name, self.source),
            str(self.spool),
            password=source_password(self.source),
            program=find_program("pg_receivewal"),
        )
        try:
            self.receiver = Process(command, stdout=False)
        except ToolError as error:
            log.warning("could not start pg_receivewal: %s", error.message)
            return
        (self.spool / RECEIVER_PID_FILE).write_text(f"{self.receiver.pid}\n")
        log.info("pg_receivewal streaming %s into %s", self.source_name, self.spool)

    def stop_receiver(self) -> None:
        """SIGTERM: pg_receivewal flushes what it has and exits."""
        receiver, self.receiver = self.receiver, None
        if receiver is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(receiver.pid, signal.SIGTERM)
        with contextlib.suppress(Exception):
            receiver.finish(timeout=10)
        receiver.kill()
        (self.spool / RECEIVER_PID_FILE).unlink(missing_ok=True)

    def _received_position(self) -> int | None:
        """How far the receiver has flushed WAL into the spool (the slot's position)."""
        assert isinstance(self.probe, ServerProbe)
        return self.probe.received_position(slot_for(self.plan.name, self.source))

    def _beat(self) -> None:
        every = self.settings.heartbeat_every
        if every is None or time.monotonic() - self._last_heartbeat < every.total_seconds():
            return
        if self.probe.write_heartbeat():
            self._last_heartbeat = time.monotonic()

    # --- one round -----------------------------------------------------------------------

    def ship_round(self, proof: tuple[int, datetime] | None = None) -> RoundReport:
        """Ship what the spool holds to every store lacking it; see the module docstring.
        ``proof``: the server's flush position and time (read now when not given)."""
        report = RoundReport()
        proof = proof or self.probe.flush_position()
        # read after the proof and before the spool: the spool holds at least this much
        received = self._received_position()
        shipments = self._collect()
        if received is not None:
            extend_to_received(shipments, received)
        # a segment that left the spool still bounds what the stores hold (an idle server
        # after a segment switch has no partial segment yet)
        known = [*shipments, *(s.newest for s in self.states if s.newest is not None)]
        newest_end = max((shipment.end_position for shipment in known), default=None)
        covered: datetime | None = None
        if proof is not None and newest_end is not None and proof[0] <= newest_end:
            covered = proof[1].astimezone(UTC)
        for state in self.states:
            if state.job is not None and not state.job.done():
                continue  # still busy with an earlier round: it catches up later
            wanted = [s for s in shipments if state.held.get(_held_key(s)) != s.digest]
            reach = proof[0] if proof is not None else 0
            state.job = self._pool.submit(
                self._sync_store, state, wanted, covered, shipments, reach
            )
        wait(
            [state.job for state in self.states if state.job is not None],
            timeout=STORE_ROUND_TIMEOUT,
        )
        for state in self.states:
            if state.job is not None and state.job.done():
                report.shipped += self._collect_job(state)
        report.removed_from_spool = self._trim_spool(shipments)
        report.covered_until = covered
        return report

    def _collect(self) -> list[Shipment]:
        """Seal every file in the spool (history files, completed segments, the partial)."""
        shipments = []
        for path in sorted(self.spool.iterdir()):
            name = path.name
            try:
                if is_history_name(name):
                    shipments.append(self._seal(path, WalObject("history", name)))
                elif is_segment_name(name):
                    shipments.append(self._seal(path, WalObject("segment", name)))
                elif name.endswith(PARTIAL_SUFFIX) and is_segment_name(
                    name[: -len(PARTIAL_SUFFIX)]
                ):
                    shipments.append(
                        self._seal(path, WalObject("partial", name[: -len(PARTIAL_SUFFIX)]))
                    )
            except FileNotFoundError:
                continue  # renamed by pg_receivewal meanwhile: next round
        return shipments

    def _seal(self, path: Path, wal_object: WalObject) -> Shipment:
        data = path.read_bytes()
        valid, end = self._measure(wal_object, data)
        digest = hashlib.sha256(data).hexdigest()
        # an unchanged file is not sealed again: its digest says every store has it
        if all(
            state.held.get(f"{wal_object.kind}:{wal_object.name}") == digest
            for state in self.states
        ):
            sealed = b""
        else:
            sealed = seal_wal(data, wal_object, self.plan.name, self.source_name, self.keys)
        detail = data.decode("utf-8", "replace") if wal_object.kind == "history" else None
        return Shipment(wal_object, sealed, digest, valid, end, path, detail, file_bytes=len(data))

    def _measure(self, wal_object: WalObject, data: bytes) -> tuple[int, int]:
        """The bytes of the file that hold WAL, and the WAL position it holds everything to."""
        valid = len(data.rstrip(b"\0")) if wal_object.kind == "partial" else len(data)
        end = 0
        if wal_object.kind != "history":
            start = parse_segment_name(wal_object.name, len(data)).start(len(data))
            end = start + min(len(data), -(-valid // ALIGNMENT) * ALIGNMENT)
        return valid, end

    def _sync_store(
        self,
        state: StoreState,
        wanted: list[Shipment],
        covered: datetime | None,
        everything: list[Shipment],
        reach: int = 0,
    ) -> StoreJob:
        """Put what one store lacks (runs in a thread): the ledger rows of what it now holds,
        with the round's proof on the newest file once the store holds everything."""
        store = state.store
        job = StoreJob()
        now = datetime.now(UTC)
        try:
            for shipment in wanted:
                wal_object = shipment.wal_object
                store.put(wal_object.key(self.plan.name, self.source_name), [shipment.sealed])
                state.held[_held_key(shipment)] = shipment.digest
                state.sizes[_held_key(shipment)] = len(shipment.sealed)
                job.shipped += 1
                job.records.append(self._record(state, shipment, None, now))
                if wal_object.kind != "history" and (
                    state.newest is None or shipment.end_position >= state.newest.end_position
                ):
                    state.newest = shipment
                if wal_object.kind == "segment":
                    self._drop_partial(state, wal_object.name)
        except Exception as error:
            job.error = error
            return job
        held = [s for s in everything if state.held.get(_held_key(s)) == s.digest]
        candidates = [*held, *([state.newest] if state.newest is not None else [])]
        newest = max(candidates, key=lambda shipment: shipment.end_position, default=None)
        if covered is not None and newest is not None and newest.end_position >= reach:
            job.records = [r for r in job.records if r.name != newest.wal_object.name]
            job.records.append(self._record(state, newest, covered, now))
        if time.monotonic() - state.listed_at >= self.reconcile_every:
            with contextlib.suppress(Exception):  # a listing that fails is tried next time
                keys = store.list(wal_prefix(self.plan.name, self.source_name))
                found = objects_from_keys(self.plan.name, self.source_name, keys)
                job.listing = {f"{item.kind}:{item.name}" for item in found}
                state.listed_at = time.monotonic()
        return job

    def _record_problem(self, name: str, text: str) -> None:
        """A gap the archiver cannot close, as a ledger row of every store that `drkit
        status` shows (binlogs purged before they were archived, a SQLite log that started
        over while no archiver ran)."""
        now = datetime.now(UTC)
        self._notify("objective_breached", "breached", f"{self.source_name}: {text}")
        self.ledger.record_wal_objects(
            [
                WalRecord(
                    self.plan.name,
                    self.source_name,
                    state.store.name,
                    PROBLEM_KIND,
                    name[:64],
                    0,
                    "",
                    None,
                    None,
                    now,
                    text,
                )
                for state in self.states
            ]
        )

    def _reconcile(self, state: StoreState, listing: set[str]) -> None:
        """Forget what the ledger says the store holds but its listing lacks (deleted or lost
        objects: the window shows the gap), and ship it again while the spool has it. Problem
        rows are not objects and stay."""
        rows = self.ledger.list_wal_objects(
            self.plan.name, source=self.source_name, store=state.store.name
        )
        missing: dict[str, list[str]] = {}
        for row in rows:
            if row.kind != PROBLEM_KIND and f"{row.kind}:{row.name}" not in listing:
                missing.setdefault(row.kind, []).append(row.name)
        for kind, names in missing.items():
            log.warning(
                "store %s lost %d WAL %s file(s), first %s",
                state.store.name,
                len(names),
                kind,
                names[0],
            )
            self.ledger.forget_wal_objects(
                self.plan.name, self.source_name, state.store.name, kind, names
            )
            for name in names:
                state.held.pop(f"{kind}:{name}", None)

    def _drop_partial(self, state: StoreState, name: str) -> None:
        """The completed segment is durable: its partial object goes."""
        partial = WalObject("partial", name)
        state.store.delete(partial.key(self.plan.name, self.source_name))
        state.held.pop(f"partial:{name}", None)
        state.proven.pop(f"partial:{name}", None)
        self.ledger.forget_wal_objects(
            self.plan.name, self.source_name, state.store.name, "partial", [name]
        )

    def _record(
        self, state: StoreState, shipment: Shipment, covered: datetime | None, now: datetime
    ) -> WalRecord:
        key = _held_key(shipment)
        name = shipment.wal_object.name
        inherited = state.proven.get(key) or state.proven.get(f"partial:{name}")
        if covered is None or (inherited is not None and inherited > covered):
            covered = inherited
        if covered is not None:
            state.proven[key] = covered
        return WalRecord(
            plan=self.plan.name,
            source=self.source_name,
            store=state.store.name,
            kind=shipment.wal_object.kind,
            name=name,
            size=state.sizes.get(key, len(shipment.sealed)),
            sha256=shipment.digest,
            valid_bytes=shipment.valid_bytes,
            covered_until=covered,
            archived_at=now,
            detail=shipment.detail,
        )

    def _collect_job(self, state: StoreState) -> int:
        assert state.job is not None
        job = state.job.result()
        state.job = None
        if job.records:
            self.ledger.record_wal_objects(job.records)
        if job.listing is not None:
            self._reconcile(state, job.listing)
        if job.error is not None:
            if state.failing_since is None:
                state.failing_since = datetime.now(UTC)
            state.last_error = describe_failure(job.error)
            log.warning("store %s: WAL not shipped: %s", state.store.name, state.last_error)
            failing = datetime.now(UTC) - state.failing_since
            if not state.alerted and failing > self.settings.stall_after:
                state.alerted = True
                self._notify(
                    "degraded",
                    "degraded",
                    f"{self.source_name}@{state.store.name}: nothing archived for "
                    f"{int(failing.total_seconds())}s: {state.last_error}",
                )
        else:
            if state.alerted:
                state.alerted = False
                self._notify(
                    "recovered",
                    "ok",
                    f"{self.source_name}@{state.store.name}: archiving caught up",
                )
            state.failing_since, state.last_error = None, None
        return job.shipped

    def _notify(self, event: str, outcome: str, summary: str) -> None:
        """Tell whoever listens (`drkit archive`: the plan's webhooks) about an event."""
        with contextlib.suppress(Exception):  # best effort: never stops archiving
            self.on_event(event, outcome, summary)

    def _trim_spool(self, shipments: list[Shipment]) -> int:
        """Remove completed segments and history files every store holds (or, past the
        grace period, as many as the copy policy requires)."""
        removed = 0
        now = datetime.now(UTC)
        for shipment in shipments:
            if shipment.wal_object.kind == "partial" or shipment.path is None:
                continue
            holders = [
                s.store for s in self.states if s.held.get(_held_key(shipment)) == shipment.digest
            ]
            if not self._meets_policy(holders):
                continue
            first = self._first_durable.setdefault(shipment.wal_object.name, now)
            if len(holders) < len(self.states) and now - first < SPOOL_GRACE:
                continue
            shipment.path.unlink(missing_ok=True)
            self._first_durable.pop(shipment.wal_object.name, None)
            removed += 1
        return removed

    def _meets_policy(self, holders: list[Store]) -> bool:
        copies = self.plan.copies
        required = min(copies.min_stores, len(self.states))
        return len(holders) >= max(required, 1) and len({s.region for s in holders}) >= min(
            copies.min_regions, len({s.store.region for s in self.states})
        )


def extend_to_received(shipments: list[Shipment], received: int) -> None:
    """Where the partial segment's WAL ends, from what the receiver reported flushed.

    Reading the end off the file (its last non-zero byte) stops short when the last record
    ends in zero bytes (an idle server's last record often does), and then no round proves
    the server's flush position. The receiver's flushed position, read before the spool, is
    in the file: the partial segment holding it (the newest timeline's, after a switch)
    reaches at least that far."""
    holding = []
    for shipment in shipments:
        if shipment.wal_object.kind != "partial" or not shipment.file_bytes:
            continue
        segment = parse_segment_name(shipment.wal_object.name, shipment.file_bytes)
        start = segment.start(shipment.file_bytes)
        if start < received <= start + shipment.file_bytes:
            holding.append((segment.timeline, start, shipment))
    if not holding:
        return
    _, start, newest = max(holding, key=lambda item: item[0])
    if received > newest.end_position:
        newest.end_position = received
        newest.valid_bytes = max(newest.valid_bytes, received - start)


def _held_key(shipment: Shipment) -> str:
    return f"{shipment.wal_object.kind}:{shipment.wal_object.name}"


def end_leftover_receiver(spool: Path, program: str = "pg_receivewal") -> None:
    """A receiver (pg_receivewal, mariadb-binlog) that a killed archiver left streaming into
    this spool: end it, so the slot (or server id) is free for the new one."""
    try:
        pid = int((spool / RECEIVER_PID_FILE).read_text().split()[0])
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if os.fsencode(program) not in command_line or os.fsencode(str(spool)) not in command_line:
        return
    log.info("ending %s %s left by an archiver that was killed", program, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
