"""Where the catalog lives and how drkit talks to it: URL resolution (argument, DRKIT_CATALOG,
or a SQLite file under DRKIT_HOME), engines tuned per database, transactions, and errors
turned into one-line CatalogErrors that never show a password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.engine import URL, Connection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from drkit.errors import CatalogError
from drkit.home import drkit_home

CATALOG_FILE = "catalog.db"
SQLITE_BUSY_TIMEOUT_SECONDS = 30
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
#: execution option marking a read-only transaction (SQLite then begins it DEFERRED)
READ_ONLY_OPTION = "drkit_read_only"
_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s]*@")
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&]password=)[^&\s]*", re.IGNORECASE)


def mask_url(text: str) -> str:
    """``text`` with every URL password replaced by ``***``; safe to print or store."""
    text = _PASSWORD_IN_URL.sub(r"\g<head>***@", text)
    return _PASSWORD_IN_QUERY.sub(r"\g<head>***", text)


def one_line(text: str, limit: int = 500) -> str:
    """The first line of ``text``, trimmed and without URL passwords, for an error column."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    first = mask_url(first)
    return first if len(first) <= limit else first[: limit - 3] + "..."


def resolve_url(url: str | None) -> URL:
    """The catalog URL to use: ``url``, else $DRKIT_CATALOG, else $DRKIT_HOME/catalog.db.

    A bare path means a SQLite file; ``postgresql://`` gets the psycopg (v3) driver.
    """
    text = url or os.environ.get("DRKIT_CATALOG")
    if not text:
        path = drkit_home() / CATALOG_FILE
        _create_private_file(path)
        return URL.create("sqlite", database=str(path))
    if "://" not in text:
        path = Path(text).expanduser()
        _create_private_file(path)
        return URL.create("sqlite", database=str(path))
    try:
        parsed = make_url(text)
    except (exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise CatalogError(f"catalog URL {mask_url(text)} is not a database URL") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        _create_private_file(Path(str(parsed.database)).expanduser())
    return parsed


def _create_private_file(path: Path) -> None:
    """Make the catalog file readable by its owner only (it names hosts, stores and errors):
    created 0600 when missing, and tightened to 0600 when an earlier release left it open."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        status = path.stat()
        if status.st_mode & 0o077 and status.st_uid == os.geteuid():
            path.chmod(0o600)
    except OSError as error:
        raise CatalogError(f"cannot create catalog {path}: {error.strerror}") from None


def display_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def describe_error(error: BaseException) -> str:
    """One line saying what went wrong, from the driver's message when there is one."""
    cause = error.orig if isinstance(error, exc.DBAPIError) and error.orig else error
    text = one_line(str(cause), limit=300)
    return text or type(cause).__name__


def create_catalog_engine(url: URL) -> Engine:
    """An engine for ``url``; CatalogError when the URL names no usable database driver."""
    try:
        if url.get_backend_name() == "sqlite":
            return _create_sqlite_engine(url)
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql":
            connect_args = {
                "connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS,
                "application_name": "drkit",
                # no server-side prepared statements: they outlive a transaction, which a
                # pooler in transaction mode (PgBouncer, docs/deployment.md) cannot keep
                "prepare_threshold": None,
            }
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as error:
        raise CatalogError(
            f"cannot use catalog {display_url(url)}: {describe_error(error)}",
            hint="use sqlite:///PATH or postgresql://USER@HOST/DB",
        ) from None


def _create_sqlite_engine(url: URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        # one shared connection, or every session would see its own empty database
        poolclass=StaticPool if in_memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy, not the sqlite3 module, decide where transactions begin
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            # write-ahead logging: readers see the last commit while a writer works, instead
            # of waiting for it (the mode is kept in the file; setting it again is a no-op)
            _enable_write_ahead_log(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            # a reader takes no write lock: it neither waits for writers nor blocks them
            connection.exec_driver_sql("BEGIN")
            return
        # take the write lock up front: read-then-write transactions (locks, upserts,
        # migrations) then serialize instead of failing with "database is locked"
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _enable_write_ahead_log(dbapi_connection: Any) -> None:
    try:
        dbapi_connection.execute("PRAGMA journal_mode = WAL")
    except Exception:  # a busy or read-only file keeps its journal mode, which still works
        return
    # with WAL, a commit need not fsync the log each time to stay consistent
    dbapi_connection.execute("PRAGMA synchronous = NORMAL")


class Database:
    """An open catalog database: its engine and a way to run one transaction."""

    def __init__(self, engine: Engine, url: URL):
        self.engine = engine
        self.url = display_url(url)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any error.

        Database failures become CatalogError; IntegrityError passes through for callers
        that resolve races (two runners inserting the same lock row).
        """
        try:
            with self._sessions.begin() as session:
                yield session
        except exc.IntegrityError:
            raise
        except exc.DBAPIError as error:
            raise CatalogError(f"catalog {self.url}: {describe_error(error)}") from error

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads: on SQLite it takes no write lock (a plain BEGIN),
        so readers never queue behind writers or each other."""
        try:
            with self._read_sessions.begin() as session:
                yield session
        except exc.DBAPIError as error:
            raise CatalogError(f"catalog {self.url}: {describe_error(error)}") from error

    def close(self) -> None:
        self.engine.dispose()
