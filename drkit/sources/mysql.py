"""MariaDB and MySQL databases: captured with mariadb-dump (or mysqldump) as SQL, restored by
piping that SQL into the mariadb (or mysql) client.

The dump runs in one ``--single-transaction`` snapshot and is taken without ``--databases``, so
it holds no CREATE DATABASE/USE and restores into a database of any name. Row counts are read
from the dump stream itself as it passes (``mysql_dump.DumpReader``): they describe exactly
what the artifact holds, need no global read lock or extra privilege, and stay exact for
non-transactional engines (MyISAM, Aria) too. A dump is complete only when mariadb-dump exited
0 and its last line is ``-- Dump completed``. docs/sources.md gives the reasons and numbers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import IO, Any

import pymysql

from drkit.errors import SourceError, ToolError
from drkit.execute import Command, Process, find_program, has_program, run
from drkit.plan.schema import MysqlSource
from drkit.secrets import Secret, SecretRef
from drkit.sources import mysql_fidelity
from drkit.sources.base import Capture, Fingerprint, Restored, Target
from drkit.sources.mysql_dump import DumpReader, stream_dump
from drkit.sources.urls import DatabaseUrl, parse_database_url
from drkit.units import humanize_bytes

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
DEFAULT_PORT = 3306
CONNECT_TIMEOUT_SECONDS = 15
DUMP_PROGRAMS = ("mariadb-dump", "mysqldump")
CLIENT_PROGRAMS = ("mariadb", "mysql")
#: Accounts a restore target lacks are left out (and listed) unless the caller says otherwise:
#: a shared server keeps no account a restore made (``mysql_fidelity``).
DEFAULT_ROLES = "skip"
#: the [client] option file holding the password, in a private folder
OPTION_FILE = "client.cnf"


#: Canonical schema description from information_schema (``%s`` is the database name). Table
#: and routine names only, never the database name, so a restore under another name hashes the
#: same; AUTO_INCREMENT counters and definers are left out as data rather than schema.
SCHEMA_QUERIES: dict[str, str] = {
    "table": "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_COLLATION"
    " FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
    "column": "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE,"
    " COLUMN_DEFAULT, EXTRA, CHARACTER_SET_NAME, COLLATION_NAME, GENERATION_EXPRESSION"
    " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s",
    "index": "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE, SUB_PART,"
    " INDEX_TYPE FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s",
    "constraint": "SELECT TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE"
    " FROM information_schema.TABLE_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s",
    "key": "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, ORDINAL_POSITION,"
    " IF(REFERENCED_TABLE_SCHEMA = TABLE_SCHEMA, '', REFERENCED_TABLE_SCHEMA),"
    " REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME"
    " FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s",
    "reference": "SELECT TABLE_NAME, CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE"
    " FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s",
    "check": "SELECT CONSTRAINT_NAME, CHECK_CLAUSE"
    " FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s",
    "view": "SELECT TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, SECURITY_TYPE"
    " FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s",
    "routine": "SELECT ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, ROUTINE_DEFINITION,"
    " IS_DETERMINISTIC, SQL_DATA_ACCESS, SECURITY_TYPE"
    " FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
    "parameter": "SELECT SPECIFIC_NAME, ORDINAL_POSITION, PARAMETER_MODE, PARAMETER_NAME,"
    " DTD_IDENTIFIER FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = %s",
    "trigger": "SELECT TRIGGER_NAME, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_TIMING,"
    " ACTION_ORDER, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
    "event": "SELECT EVENT_NAME, EVENT_TYPE, EVENT_DEFINITION, INTERVAL_VALUE, INTERVAL_FIELD,"
    " STATUS, ON_COMPLETION FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
}

COUNTED_TABLE_TYPES = ("BASE TABLE", "SYSTEM VERSIONED")


# --- commands (pure) ---------------------------------------------------------------------------


def connection_arguments(url: DatabaseUrl) -> list[str]:
    """Client flags naming the server and user (never the password)."""
    socket = url.option("socket")
    if socket:
        arguments = ["--protocol=SOCKET", f"--socket={socket}"]
    else:
        # Explicit TCP: with host "localhost" the client would silently switch to the socket.
        arguments = [
            "--protocol=TCP",
            f"--host={url.host or 'localhost'}",
            f"--port={url.port or DEFAULT_PORT}",
        ]
    return arguments + ([f"--user={url.user}"] if url.user else [])


def _option_file_arguments(option_file: Path | None) -> list[str]:
    # The client only honours --defaults-extra-file as its very first argument.
    return [f"--defaults-extra-file={option_file}"] if option_file is not None else []


def make_dump_command(
    url: DatabaseUrl,
    *,
    option_file: Path | None,
    program: str = "mariadb-dump",
    binlog_position: bool = False,
) -> Command:
    """mariadb-dump/mysqldump writing ``url``'s database as SQL to stdout, in one snapshot.
    ``binlog_position``: the dump names, as comments, the binlog file, position and GTID its
    snapshot is consistent with (MariaDB reads them inside the snapshot, without a lock)."""
    coordinates = ("--master-data=2", "--gtid") if binlog_position else ()
    return Command(
        argv=(
            program,
            *_option_file_arguments(option_file),
            *connection_arguments(url),
            "--single-transaction",  # one consistent InnoDB snapshot, no table locks
            *coordinates,
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",  # binary columns as 0x..., safe through any client charset
            "--default-character-set=utf8mb4",
            "--no-tablespaces",
            # No --databases: without CREATE DATABASE/USE the dump restores under any name.
            url.require_database(),
        )
    )


def make_restore_command(
    url: DatabaseUrl, *, option_file: Path | None, program: str = "mariadb"
) -> Command:
    """The mariadb/mysql client reading a dump from stdin into ``url``'s database."""
    return Command(
        argv=(
            program,
            *_option_file_arguments(option_file),
            *connection_arguments(url),
            "--binary-mode",  # data may hold \0 and \r; take the SQL as bytes
            "--default-character-set=utf8mb4",
            f"--database={url.require_database()}",
        )
    )


def format_option_file(password: Secret) -> str:
    """A ``[client]`` option file holding ``password``, quoted and escaped for the client."""
    value = password.reveal()
    if "\n" in value or "\r" in value:
        raise SourceError("a MariaDB password must not contain a line break")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'[client]\npassword="{escaped}"\n'


def write_option_file(directory: Path, password: Secret) -> Path:
    """Write the option file into ``directory``, readable by this user only (mode 0600)."""
    path = directory / OPTION_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(format_option_file(password))
    return path


# --- server access -----------------------------------------------------------------------------


def connect(url: DatabaseUrl, password: Secret | None, *, database: bool = True) -> Any:
    """An autocommit PyMySQL connection (to the server only unless ``database``)."""
    try:
        return pymysql.connect(
            host=url.host or "localhost",
            port=url.port or DEFAULT_PORT,
            user=url.user,
            password=password.reveal() if password is not None else "",
            database=url.require_database() if database else None,
            unix_socket=url.option("socket"),
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )
    except pymysql.MySQLError as error:
        raise SourceError(
            f"cannot connect to {url}: {_describe(error)}",
            hint="check the URL, that the server is up, and the password reference",
        ) from None


def _describe(error: BaseException) -> str:
    # PyMySQL errors carry (code, message); the message alone reads best.
    arguments = error.args
    text = str(arguments[1]) if len(arguments) > 1 else str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def fetch_all(connection: Any, query: str, *parameters: object) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(query, parameters or None)
        return list(cursor.fetchall())


def hash_schema(connection: Any, database: str) -> str:
    """sha256 over a canonical, sorted description of the database's schema."""
    qualifier = f"`{database.replace('`', '``')}`."  # view bodies name their own database
    lines = []
    for kind, query in SCHEMA_QUERIES.items():
        for row in fetch_all(connection, query, database):
            fields = ("" if value is None else str(value).replace(qualifier, "") for value in row)
            lines.append("\t".join([kind, *fields]))
    digest = hashlib.sha256()
    for line in sorted(lines):
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def count_rows(connection: Any, database: str) -> dict[str, int]:
    """Exact row count of every base table of ``database``."""
    tables = fetch_all(
        connection,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
        " AND TABLE_TYPE IN %s ORDER BY TABLE_NAME",
        database,
        COUNTED_TABLE_TYPES,
    )
    counts = {}
    for (table,) in tables:
        [(count,)] = fetch_all(connection, f"SELECT COUNT(*) FROM {quote_name(str(table))}")
        counts[str(table)] = int(count)
    return counts


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def server_version(connection: Any) -> str:
    [(version,)] = fetch_all(connection, "SELECT VERSION()")
    return str(version)


def pick_program(candidates: tuple[str, ...]) -> str:
    """The first of ``candidates`` installed (MariaDB's names first), else MissingToolError."""
    for name in candidates:
        if has_program(name):
            return find_program(name)
    return find_program(candidates[0])


@cache
def tool_version(program: str) -> str:
    """``10.11.6-MariaDB`` (or ``8.0.36``) from the program's --version line."""
    text = run(Command((program, "--version"))).stdout.decode("utf-8", "replace")
    match = re.search(r"Distrib (\S+?),", text) or re.search(r"Ver (\S+)", text)
    return match.group(1) if match else text.strip()


# --- the source --------------------------------------------------------------------------------


class MysqlDatabase:
    """A MariaDB or MySQL database named by a plan's ``mysql`` source."""

    type = "mysql"

    def __init__(self, spec: MysqlSource) -> None:
        self.spec = spec
        self.name = spec.name
        self.url = parse_database_url(spec.url)
        self.url.require_database()

    def _password(self) -> Secret | None:
        return SecretRef(self.spec.password).resolve() if self.spec.password else None

    def default_target(self) -> Target:
        return Target(location=str(self.url), password=self._password())

    @contextmanager
    def snapshot(self) -> Iterator[Capture]:
        password = self._password()
        database = self.url.require_database()
        with connect(self.url, password) as connection:
            # Not in the dump's snapshot: DDL and grants are not transactional here anyway.
            schema_sha256 = hash_schema(connection, database)
            version = server_version(connection)
            fidelity, warnings = mysql_fidelity.capture(connection, database)
        program = pick_program(DUMP_PROGRAMS)
        versions = {Path(program).name: tool_version(program)}
        binlog: dict[str, object] | None = {} if self.spec.pitr is not None else None
        reader = DumpReader(binlog)
        # reader.rows fills as the stream passes; complete once the chunks are exhausted.
        fingerprint: Fingerprint = {
            "tables": reader.rows,
            # each table's rows as dumped, hashed as they pass: no extra query on the server
            "digests": reader.content,
            "schema_sha256": schema_sha256,
            "server_version": version,
            **fidelity,
        }
        if binlog is not None:
            fingerprint["binlog"] = binlog
        with tempfile.TemporaryDirectory(prefix="drkit-") as directory:  # mkdtemp: mode 0700
            option_file = write_option_file(Path(directory), password) if password else None
            command = make_dump_command(
                self.url,
                option_file=option_file,
                program=program,
                binlog_position=binlog is not None,
            )
            with Process(command) as process:
                yield Capture(
                    chunks=stream_dump(process, reader, f"{Path(program).name} of {self.name}"),
                    fingerprint=fingerprint,
                    extension="sql",
                    tool_versions=versions,
                    format="mysqldump-sql",
                    warnings=warnings,
                )

    def is_target_empty(self, target: Target) -> bool:
        contents = self._contents(target)
        return contents is None or not any(contents[:3])

    def describe_target(self, target: Target) -> str:
        contents = self._contents(target)
        database = parse_database_url(target.location).database
        if contents is None:
            return f"database {database} does not exist"
        relations, routines, events, size = contents
        return (
            f"database {database}: {relations} tables and views, {routines} routines, "
            f"{events} events, {humanize_bytes(size)}"
        )

    def _contents(self, target: Target) -> tuple[int, int, int, int] | None:
        url = parse_database_url(target.location)
        database = url.require_database()
        with connect(url, target.password, database=False) as connection:
            if not _database_exists(connection, database):
                return None
            [(relations, size)] = fetch_all(
                connection,
                "SELECT COUNT(*), COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0)"
                " FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                database,
            )
            [(routines,)] = fetch_all(
                connection,
                "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
                database,
            )
            [(events,)] = fetch_all(
                connection,
                "SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
                database,
            )
        return int(relations), int(routines), int(events), int(size)

    def restore(
        self,
        stream: IO[bytes],
        target: Target,
        *,
        replace: bool = False,
        captured: Fingerprint | None = None,
    ) -> None:
        restored = self.restore_faithfully(
            stream, target, captured=captured or {}, roles=DEFAULT_ROLES, replace=replace
        )
        for what in restored.left_out:
            log.warning("restore of %s left out %s", self.name, what)

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
        """Restore as ``restore`` does, with what ``captured`` recorded (character set and
        collation, grants, definers), accounts the target lacks handled as ``roles`` says
        (``mysql_fidelity``). What was deliberately left out is listed for people; grants left
        out for a missing account cannot match, so they are not verified."""
        url = parse_database_url(target.location)
        if not replace and not self.is_target_empty(target):
            # the dump's DROP TABLE statements would silently replace what is there
            raise SourceError(
                f"{url.database} is not empty ({self.describe_target(target)})",
                hint="restore with replace (--force), or into another database",
            )
        database = url.require_database()
        with (
            connect(url, target.password, database=False) as connection,
            self._fidelity_step("creating the database and the accounts it needs", database),
        ):
            accounts = mysql_fidelity.prepare_accounts(connection, captured, roles)
            self._prepare_database(connection, database, captured, replace=replace)
        self._load(stream, url, target.password)
        with (
            connect(url, target.password, database=False) as connection,
            self._fidelity_step("granting the captured privileges", database),
        ):
            mysql_fidelity.apply_grants(connection, captured, database, accounts)
        left_out = accounts.left_out
        unverified = {"privileges"} if any(w.startswith("grants to ") for w in left_out) else set()
        return Restored(left_out=left_out, unverified=unverified)

    @contextmanager
    def _fidelity_step(self, what: str, database: str) -> Iterator[None]:
        """The server's refusal of a step around the load, as one line with a hint."""
        try:
            yield
        except pymysql.MySQLError as error:
            code = str(error.args[0]) if error.args else ""
            raise SourceError(
                f"restoring {self.name} into {database}: {what} failed: {_describe(error)}",
                hint=mysql_fidelity.ERROR_HINTS.get(code)
                or "restore as a user with CREATE USER and GRANT OPTION, or with --roles skip",
            ) from None

    def _load(self, stream: IO[bytes], url: DatabaseUrl, password: Secret | None) -> None:
        """Pipe the dump into the client; the client's own error, with a hint, on failure."""
        program = pick_program(CLIENT_PROGRAMS)
        with tempfile.TemporaryDirectory(prefix="drkit-") as directory:  # mkdtemp: mode 0700
            option_file = write_option_file(Path(directory), password) if password else None
            command = make_restore_command(url, option_file=option_file, program=program)
            with Process(command, stdin=True, stdout=False) as process:
                try:
                    while chunk := stream.read(CHUNK_SIZE):
                        process.stdin.write(chunk)
                except BrokenPipeError:
                    pass  # the client stopped on an error; finish() reports it
                try:
                    process.finish()
                except ToolError as error:
                    raise SourceError(
                        f"restoring {self.name} into {url.database} failed: {error.message}",
                        hint=mysql_fidelity.hint_for_client_error(error.message)
                        or "the target database is left as the client stopped; restore "
                        "again with --force to replace it",
                    ) from None

    def _prepare_database(
        self, connection: Any, database: str, captured: Fingerprint, *, replace: bool
    ) -> None:
        """Create the target database with the captured character set and collation (utf8mb4
        for a snapshot that did not record them), dropping it first when ``replace``."""
        recorded = captured.get("database") or {}
        charset = str(recorded.get("charset") or "utf8mb4")
        collation = recorded.get("collation")
        options = f"CHARACTER SET {charset}" + (f" COLLATE {collation}" if collation else "")
        with connection.cursor() as cursor:
            if replace:
                log.info("dropping database %s before restoring into it", database)
                cursor.execute(f"DROP DATABASE IF EXISTS {quote_name(database)}")
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {quote_name(database)} {options}")

    def fingerprint_target(self, target: Target, like: Fingerprint) -> Fingerprint:
        url = parse_database_url(target.location)
        database = url.require_database()
        with connect(url, target.password) as connection:
            fingerprint: Fingerprint = {
                "tables": count_rows(connection, database),
                "schema_sha256": hash_schema(connection, database),
                "server_version": server_version(connection),
                **mysql_fidelity.fidelity_fingerprint(connection, database, like),
            }
        if not like or "digests" in like:
            fingerprint["digests"] = self._dump_content(url, target.password)
        return {key: value for key, value in fingerprint.items() if not like or key in like}

    def _dump_content(self, url: DatabaseUrl, password: Secret | None) -> dict[str, str]:
        """Per-table content digests of a restored database, read from its dump the way the
        backup read the source's (the restored copy bears the load, not production)."""
        program = pick_program(DUMP_PROGRAMS)
        reader = DumpReader()
        with tempfile.TemporaryDirectory(prefix="drkit-") as directory:  # mkdtemp: mode 0700
            option_file = write_option_file(Path(directory), password) if password else None
            command = make_dump_command(url, option_file=option_file, program=program)
            with Process(command) as process:
                for _ in stream_dump(process, reader, f"{Path(program).name} of {url.database}"):
                    pass
        return reader.content

    def query(self, target: Target, sql: str) -> object:
        url = parse_database_url(target.location)
        with connect(url, target.password) as connection, connection.cursor() as cursor:
            cursor.execute("START TRANSACTION READ ONLY")
            try:
                cursor.execute(sql)
                row = cursor.fetchone()
            except pymysql.MySQLError as error:
                raise SourceError(f"query on {url.database} failed: {_describe(error)}") from None
            finally:
                cursor.execute("ROLLBACK")
        return row[0] if row else None


def _database_exists(connection: Any, database: str) -> bool:
    query = "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s"
    return bool(fetch_all(connection, query, database))
