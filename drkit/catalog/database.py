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

DEFAULT_HOME = "~/.local/state/drkit"
CATALOG_FILE = "catalog.db"
SQLITE_BUSY_TIMEOUT_SECONDS = 30
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
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


def drkit_home() -> Path:
    """drkit's state directory ($DRKIT_HOME, default ~/.local/state/drkit), created 0700."""
    home = Path(os.environ.get("DRKIT_HOME") or DEFAULT_HOME).expanduser()
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise CatalogError(
            f"cannot create drkit's state directory {home}: {error.strerror}",
            hint="set DRKIT_HOME to a writable directory, or pass --catalog URL",
        ) from None
    return home


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
        return URL.create("sqlite", database=str(Path(text).expanduser()))
    try:
        parsed = make_url(text)
    except (exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise CatalogError(f"catalog URL {mask_url(text)} is not a database URL") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _create_private_file(path: Path) -> None:
    """Create the default catalog file readable by its owner only (it names hosts and stores)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
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

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # take the write lock up front: read-then-write transactions (locks, upserts,
        # migrations) then serialize instead of failing with "database is locked"
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """An open catalog database: its engine and a way to run one transaction."""

    def __init__(self, engine: Engine, url: URL):
        self.engine = engine
        self.url = display_url(url)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

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

    def close(self) -> None:
        self.engine.dispose()
