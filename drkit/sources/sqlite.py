"""SQLite databases, captured with the online backup API so the copy is consistent while the
application keeps writing, checked with ``PRAGMA integrity_check`` and fingerprinted on the
copy, then streamed from it."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from drkit import leases
from drkit.errors import RefusedError, SourceError
from drkit.plan.schema import SqliteSource
from drkit.sources.base import RESTORING_MARK, Capture, Fingerprint, Restored, Target

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
#: How long the backup waits for a writer holding an exclusive lock, per attempt.
BUSY_TIMEOUT_SECONDS = 30.0
#: Files SQLite keeps beside a database; stale ones must never meet a replaced database.
SIDECAR_SUFFIXES = ("-wal", "-shm", "-journal")


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open an existing database without any chance of creating or changing it."""
    uri = path.resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS)


def check_integrity(connection: sqlite3.Connection, what: str) -> None:
    """SourceError unless ``PRAGMA integrity_check`` answers exactly ``ok``."""
    try:
        rows = [str(row[0]) for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as error:
        raise SourceError(f"{what} is not a valid SQLite database: {error}") from None
    if rows != ["ok"]:
        raise SourceError(
            f"{what} failed PRAGMA integrity_check: {rows[0]}"
            + (f" (and {len(rows) - 1} more problems)" if len(rows) > 1 else ""),
            hint="the database is corrupt; restore it from an earlier snapshot or repair it with "
            "`sqlite3 DB .recover`",
        )


def fingerprint_database(connection: sqlite3.Connection) -> Fingerprint:
    """Exact row counts per table, a hash of the schema, and the SQLite library version."""
    names = [
        str(row[0])
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]
    tables = {}
    for name in names:
        counted = connection.execute(f"SELECT count(*) FROM {quote_identifier(name)}").fetchone()
        tables[name] = int(counted[0])
    schema_rows = connection.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")
    statements = sorted(str(row[0]) for row in schema_rows)
    schema = hashlib.sha256("\n".join(statements).encode("utf-8")).hexdigest()
    return {"tables": tables, "schema_sha256": schema, "server_version": sqlite3.sqlite_version}


def read_chunks(file: IO[bytes]) -> Iterator[bytes]:
    """The rest of ``file`` in CHUNK_SIZE pieces."""
    while chunk := file.read(CHUNK_SIZE):
        yield chunk


def file_attributes(status: os.stat_result) -> dict[str, object]:
    """What an application needs to open a database file again: its mode and owner."""
    return {
        "mode": f"{stat.S_IMODE(status.st_mode):04o}",
        "uid": status.st_uid,
        "gid": status.st_gid,
    }


def can_give_to(uid: int) -> bool:
    """Whether this process can make ``uid`` a file's owner: as root, or its own uid."""
    return os.geteuid() in (0, uid)


def apply_attributes(descriptor: int, attributes: dict[str, Any], path: Path) -> None:
    """Give the file open as ``descriptor`` the recorded mode, and the owner when this process
    can (as root, or when the owner is the restoring user); a warning says what was left."""
    if "mode" in attributes:
        os.fchmod(descriptor, int(str(attributes["mode"]), 8))
    uid, gid = attributes.get("uid"), attributes.get("gid")
    if not isinstance(uid, int) or not isinstance(gid, int):
        return
    if not can_give_to(uid):
        log.warning("%s: owner %d:%d not restored (only root can give files away)", path, uid, gid)
        return
    try:
        os.fchown(descriptor, uid, gid)
    except PermissionError:  # the owner, but not in that group
        os.fchown(descriptor, uid, -1)
        log.warning("%s: group %d not restored (not a member)", path, gid)


def fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class SqliteDatabase:
    """A SQLite database file named by a plan's ``sqlite`` source."""

    type = "sqlite"

    def __init__(self, spec: SqliteSource):
        self.name = spec.name
        self.path = Path(spec.path)

    # --- capture ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Capture]:
        """Back up into a private temporary file, check and fingerprint the copy, stream it."""
        if not self.path.is_file():
            # Never let sqlite3.connect create an empty database in place of a missing one.
            raise SourceError(
                f"sqlite source {self.name}: {self.path} does not exist",
                hint="check the source's path in the plan and that drkit runs where the file is",
            )
        with tempfile.TemporaryDirectory(prefix="drkit-sqlite-") as directory:
            copy = Path(directory) / f"{self.name}.sqlite"
            fingerprint = self._capture(copy)
            # mode and owner of the database file, so a restore in place keeps it openable
            fingerprint["file"] = file_attributes(self.path.stat())
            with copy.open("rb") as file:
                yield Capture(
                    chunks=read_chunks(file),
                    fingerprint=fingerprint,
                    extension="sqlite",
                    format="sqlite",
                    tool_versions={"sqlite": sqlite3.sqlite_version},
                )

    def _capture(self, copy: Path) -> Fingerprint:
        """Write a consistent copy of the database to ``copy``; its fingerprint."""
        what = f"sqlite source {self.name} ({self.path})"
        try:
            source = connect_read_only(self.path)
        except sqlite3.Error as error:
            raise SourceError(f"{what}: cannot open: {error}") from None
        try:
            destination = sqlite3.connect(copy)
            try:
                # pages=-1 copies everything in one step under one read transaction: a
                # consistent point in time even while the application commits.
                source.backup(destination, pages=-1)
                check_integrity(destination, what)
                return fingerprint_database(destination)
            finally:
                destination.close()
        except sqlite3.Error as error:
            raise SourceError(f"{what}: backup failed: {error}") from None
        finally:
            source.close()

    # --- targets ------------------------------------------------------------------------------

    def default_target(self) -> Target:
        return Target(str(self.path))

    def is_target_empty(self, target: Target) -> bool:
        """True for a missing or zero-length file, or a database without any schema."""
        path = Path(target.location)
        if not path.exists() or (path.is_file() and path.stat().st_size == 0):
            return True
        try:
            connection = connect_read_only(path)
            try:
                count = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            finally:
                connection.close()
        except sqlite3.Error:
            return False  # something that is not a database: replacing it loses it
        return int(count) == 0

    def describe_target(self, target: Target) -> str:
        path = Path(target.location)
        if not path.exists():
            return f"{path} does not exist"
        try:
            tables = self.fingerprint_target(target, {}).get("tables", {})
        except SourceError:
            return f"{path} is not a readable SQLite database"
        rows = sum(tables.values())
        return f"{path}: {len(tables)} tables, {rows} rows"

    def restore(
        self,
        stream: IO[bytes],
        target: Target,
        *,
        replace: bool = False,
        captured: Fingerprint | None = None,
    ) -> None:
        """Write the database next to the target, verify it, then rename it into place."""
        path = Path(target.location)
        if not replace and not self.is_target_empty(target):
            raise RefusedError(f"{path} already holds a database")
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".drkit-restore", dir=path.parent
        )
        temporary = Path(temporary_name)
        lease = leases.lease_file(temporary)  # if drkit is killed, the next command removes it
        attributes = self._attributes_for(path, captured)
        try:
            with os.fdopen(descriptor, "wb") as file:
                shutil.copyfileobj(stream, file, CHUNK_SIZE)
                apply_attributes(file.fileno(), attributes, path)
                file.flush()
                os.fsync(file.fileno())
            self._verify_restored(temporary, path)
            for suffix in SIDECAR_SUFFIXES:
                # A leftover journal of the old database would be replayed into the new one.
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            os.replace(temporary, path)
            fsync_directory(path.parent)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        finally:
            leases.release(lease)
        log.info("restored sqlite source %s to %s", self.name, path)

    def restore_faithfully(
        self,
        stream: IO[bytes],
        target: Target,
        *,
        captured: Fingerprint,
        roles: str,
        replace: bool = False,
        private: dict[str, Any] | None = None,
    ) -> Restored:
        """``restore`` with the captured mode and owner; an owner only root could give back
        is listed as left out (and not compared)."""
        self.restore(stream, target, replace=replace, captured=captured)
        recorded = captured.get("file") or {}
        uid = recorded.get("uid")
        if isinstance(uid, int) and not can_give_to(uid):
            return Restored(left_out=[f"owner {uid}:{recorded.get('gid')} of {target.location}"])
        return Restored()

    def _attributes_for(self, path: Path, captured: Fingerprint | None) -> dict[str, Any]:
        """The mode and owner the restored file gets: as captured; for a snapshot that did not
        record them (release 0.1.0), those of the file it replaces (for a staging copy beside
        it, ``<file>_drkit_restoring_<id>``, the file the copy will be swapped in for); else
        none (a private 0600 file)."""
        recorded = (captured or {}).get("file")
        if isinstance(recorded, dict):
            return recorded
        replaced = path
        if RESTORING_MARK in path.name:
            replaced = path.with_name(path.name.rpartition(RESTORING_MARK)[0])
        with contextlib.suppress(OSError):
            return file_attributes(replaced.stat())
        return {}

    def _verify_restored(self, temporary: Path, path: Path) -> None:
        try:
            connection = sqlite3.connect(temporary)
            try:
                check_integrity(connection, f"the restored copy of {path}")
            finally:
                connection.close()
        except sqlite3.Error as error:
            raise SourceError(f"the restored copy of {path} cannot be opened: {error}") from None
        for suffix in SIDECAR_SUFFIXES:
            Path(f"{temporary}{suffix}").unlink(missing_ok=True)

    def fingerprint_target(self, target: Target, like: Fingerprint) -> Fingerprint:
        """Row counts and schema hash of the database at ``target``."""
        path = Path(target.location)
        if not path.is_file():
            raise SourceError(f"{path} does not exist")
        try:
            connection = connect_read_only(path)
            try:
                fingerprint = fingerprint_database(connection)
            finally:
                connection.close()
        except sqlite3.Error as error:
            raise SourceError(f"cannot fingerprint {path}: {error}") from None
        attributes = file_attributes(path.stat())
        wanted = like.get("file") or {}
        if isinstance(wanted.get("uid"), int) and not can_give_to(wanted["uid"]):
            # not restorable by this user: reported by restore as left out, not compared
            attributes = {"mode": attributes["mode"]}
        fingerprint["file"] = attributes
        return fingerprint

    def query(self, target: Target, sql: str) -> object:
        """The first column of the first row of ``sql`` (None when no row), read-only."""
        path = Path(target.location)
        if not path.is_file():
            raise SourceError(f"{path} does not exist")
        try:
            connection = connect_read_only(path)
            try:
                row = connection.execute(sql).fetchone()
            finally:
                connection.close()
        except sqlite3.Error as error:
            raise SourceError(f"query on {path} failed: {error}") from None
        return None if row is None else row[0]
