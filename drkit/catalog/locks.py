"""Plan locks: a lease per plan so two runners never work on one plan at once.

A lease that is not renewed expires and may be taken over; every change is a conditional
UPDATE or an INSERT inside one transaction, so two runners racing for a lock on SQLite or
PostgreSQL never both win.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, exc, update
from sqlalchemy.orm import Session

from drkit.catalog.database import Database
from drkit.catalog.models import Lock
from drkit.catalog.records import LockInfo
from drkit.errors import CatalogError, LockHeldError

logger = logging.getLogger(__name__)
ACQUIRE_ATTEMPTS = 5


def make_lock_owner() -> str:
    """``host:pid:random``: names the runner in messages and tells two runs of one pid apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def acquire_lock(
    database: Database, plan: str, owner: str, lease_seconds: float, now: datetime
) -> LockInfo:
    """Take the plan's lock, or take over an expired lease; LockHeldError if it is live."""
    if lease_seconds <= 0:
        raise ValueError("lease_seconds must be positive")
    for _attempt in range(ACQUIRE_ATTEMPTS):
        try:
            with database.transaction() as session:
                info = try_acquire(session, plan, owner, lease_seconds, now)
        except exc.IntegrityError:
            continue  # another runner inserted the lock row first: look again
        if info is not None:
            return info
    current = read_lock(database, plan)
    if current is None:
        raise CatalogError(f"could not settle the lock on plan {plan!r}; try again")
    raise LockHeldError(describe_holder(current, now))


def holder_is_gone(owner: str) -> bool:
    """True when ``owner`` (``host:pid:random``) ran on this host and its process is dead: a
    killed drkit's live-looking lease is taken over at once instead of after it expires. A
    holder on another host, or a pid that is alive (even reused), keeps its lease."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def try_acquire(
    session: Session, plan: str, owner: str, lease_seconds: float, now: datetime
) -> LockInfo | None:
    """One attempt; None when another runner changed the lock between our read and write."""
    expires_at = now + timedelta(seconds=lease_seconds)
    row = session.get(Lock, plan)
    if row is None:
        session.add(
            Lock(plan=plan, owner=owner, acquired_at=now, heartbeat_at=now, expires_at=expires_at)
        )
        session.flush()
        return LockInfo(plan, owner, now, now, expires_at)
    if row.owner != owner and row.expires_at > now and not holder_is_gone(row.owner):
        raise LockHeldError(describe_holder(to_lock_info(row), now))
    took_over_from = row.owner if row.owner != owner else None
    acquired_at = now if took_over_from else row.acquired_at
    # compare-and-swap: succeeds only if the row is still what we just read
    result = session.connection().execute(
        update(Lock)
        .where(Lock.plan == plan, Lock.owner == row.owner, Lock.expires_at == row.expires_at)
        .values(owner=owner, acquired_at=acquired_at, heartbeat_at=now, expires_at=expires_at)
    )
    if result.rowcount != 1:
        return None
    return LockInfo(plan, owner, acquired_at, now, expires_at, took_over_from=took_over_from)


def heartbeat(
    database: Database, plan: str, owner: str, lease_seconds: float, now: datetime
) -> LockInfo:
    """Extend ``owner``'s lease; LockHeldError when the lock is no longer ``owner``'s."""
    with database.transaction() as session:
        result = session.connection().execute(
            update(Lock)
            .where(Lock.plan == plan, Lock.owner == owner)
            .values(heartbeat_at=now, expires_at=now + timedelta(seconds=lease_seconds))
        )
        row = session.get(Lock, plan)
        if result.rowcount == 1 and row is not None:
            return to_lock_info(row)
    if row is None:
        raise LockHeldError(f"lost the lock on plan {plan!r}: it was released or removed")
    raise LockHeldError(
        f"lost the lock on plan {plan!r}: {describe_holder(to_lock_info(row), now)}"
    )


def release_lock(database: Database, plan: str, owner: str) -> bool:
    """Drop ``owner``'s lock; False when ``owner`` did not hold it (nothing is changed)."""
    with database.transaction() as session:
        result = session.connection().execute(
            delete(Lock).where(Lock.plan == plan, Lock.owner == owner)
        )
        return result.rowcount == 1


def read_lock(database: Database, plan: str) -> LockInfo | None:
    with database.reading() as session:
        row = session.get(Lock, plan)
        return to_lock_info(row) if row is not None else None


def describe_holder(lock: LockInfo, now: datetime) -> str:
    remaining = max(0, round((lock.expires_at - now).total_seconds()))
    return (
        f"plan {lock.plan!r} is locked by {lock.owner} until "
        f"{lock.expires_at:%Y-%m-%d %H:%M:%S} UTC (lease expires in {remaining}s)"
    )


def to_lock_info(row: Lock) -> LockInfo:
    return LockInfo(row.plan, row.owner, row.acquired_at, row.heartbeat_at, row.expires_at)


class LockLease:
    """A held lock that a background thread renews every third of its lease until stopped.

    If the lease is lost (another runner took over after a stall), ``lost`` holds the error
    and ``check()`` raises it: call it before anything that must not run twice.
    """

    def __init__(
        self,
        info: LockInfo,
        renew: Callable[[], LockInfo],
        release: Callable[[], bool],
        interval_seconds: float,
    ):
        self.info = info
        self.lost: LockHeldError | None = None
        self._renew = renew
        self._release = release
        self._interval = interval_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._keep_alive, name=f"drkit-lock-{info.plan}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def check(self) -> None:
        """Raise LockHeldError if the lease was lost."""
        if self.lost is not None:
            raise self.lost

    def confirm(self) -> None:
        """Renew the lease now and raise LockHeldError if it was lost: call it before each
        step. A runner that stalled past its lease (paused, swapped out) learns here that
        another took over, before it starts anything, not a heartbeat interval later."""
        self.check()
        try:
            self.info = self._renew()
        except LockHeldError as error:
            self.lost = error
            raise

    def stop(self) -> None:
        """Stop renewing and release the lock (unless it was lost to another runner)."""
        self._stopping.set()
        self._thread.join()
        if self.lost is not None:
            return
        try:
            self._release()
        except CatalogError as error:
            # the lease expires on its own; failing here would hide the caller's own error
            logger.warning("could not release the lock on plan %s: %s", self.info.plan, error)

    def _keep_alive(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.info = self._renew()
            except LockHeldError as error:
                self.lost = error
                logger.error("%s", error)
                return
            except CatalogError as error:
                logger.warning("could not renew the lock on plan %s: %s", self.info.plan, error)
