"""MariaDB and MySQL databases: captured with mariadb-dump (or mysqldump) as SQL, restored by
piping that SQL into the mariadb (or mysql) client.

The dump runs in one ``--single-transaction`` snapshot and is taken without ``--databases``, so
it holds no CREATE DATABASE/USE and restores into a database of any name. Row counts are read
from the dump stream itself as it passes (``DumpReader``): they describe exactly what the
artifact holds, need no global read lock or extra privilege, and stay exact for
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
from drkit.sources.base import Capture, Fingerprint, Target
from drkit.sources.urls import DatabaseUrl, parse_database_url

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
DEFAULT_PORT = 3306
CONNECT_TIMEOUT_SECONDS = 15
COMPLETION_MARKER = b"-- Dump completed"
DUMP_PROGRAMS = ("mariadb-dump", "mysqldump")
CLIENT_PROGRAMS = ("mariadb", "mysql")

#: Lines of a dump that matter for row counts. Inside DELIMITER blocks (routines, triggers,
#: events) a line may look like an INSERT or CREATE TABLE without being one.
DUMP_LINE = re.compile(
    rb"^(?:(?P<delimiter>DELIMITER ;;$)|(?:(?P<create>CREATE TABLE )"
    rb"|(?:INSERT|REPLACE)(?: IGNORE)? INTO )`(?P<name>(?:[^`]|``)+)`)",
    re.MULTILINE,
)
#: String literals and quoted identifiers; the dump escapes newlines inside them as \n.
QUOTED = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'|`[^`]*`")

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
    url: DatabaseUrl, *, option_file: Path | None, program: str = "mariadb-dump"
) -> Command:
    """mariadb-dump/mysqldump writing ``url``'s database as SQL to stdout, in one snapshot."""
    return Command(
        argv=(
            program,
            *_option_file_arguments(option_file),
            *connection_arguments(url),
            "--single-transaction",  # one consistent InnoDB snapshot, no table locks
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
    path = directory / "client.cnf"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(format_option_file(password))
    return path


# --- reading a dump ----------------------------------------------------------------------------


class DumpReader:
    """Follows a dump stream as it passes: rows per table (what a restore will load) and the
    completion marker.

    It works on complete lines: the dump escapes line breaks inside literals as ``\\n``, so
    every line start lies outside any literal. mariadb-dump 10.11 writes one row per line
    (counted with ``bytes.count``); older dumps put a whole INSERT on one line (counted with
    ``count_tuples``).
    """

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self._pending = b""  # the unfinished last line
        self._tail = b""
        self._inside: str | None = None  # table of an INSERT whose rows follow line by line
        self._in_block = False  # between DELIMITER ;; and DELIMITER ; (routines, triggers)

    def feed(self, chunk: bytes) -> None:
        self._tail = (self._tail + chunk[-4096:])[-4096:]
        data = self._pending + chunk
        limit = data.rfind(b"\n") + 1
        position = 0
        while position < limit:
            if self._in_block:
                position = self._skip_block(data, position, limit)
            elif self._inside is not None:
                position = self._count_row_lines(self._inside, data, position, limit)
            elif match := DUMP_LINE.search(data, position, limit):
                position = self._start(match, data, limit)
            else:
                break
        self._pending = data[limit:]

    def _skip_block(self, data: bytes, position: int, limit: int) -> int:
        # Routine, trigger and event bodies: a line there may look like an INSERT, not be one.
        closing = b"DELIMITER ;\n"
        if data.startswith(closing, position):
            end = position
        else:
            end = data.find(b"\n" + closing, position, limit) + 1
            if end == 0:
                return limit
        self._in_block = False
        return end + len(closing)

    def _count_row_lines(self, table: str, data: bytes, position: int, limit: int) -> int:
        end = data.find(b";\n", position, limit)  # the statement's end: no literal spans lines
        stop = limit if end < 0 else end
        self.rows[table] += data.count(b"\n(", position, stop) + data.startswith(b"(", position)
        if end < 0:
            return limit
        self._inside = None
        return end + 2

    def _start(self, match: re.Match[bytes], data: bytes, limit: int) -> int:
        if match["delimiter"]:
            self._in_block = True
            return match.end() + 1
        name = match["name"].replace(b"``", b"`").decode("utf-8", "replace")
        if match["create"]:
            self.rows.setdefault(name, 0)
            return match.end()
        line_end = data.find(b"\n", match.end(), limit)
        rest = data[match.end() : line_end]
        self.rows[name] = self.rows.get(name, 0) + count_tuples(rest)
        if not rest.endswith(b";"):
            self._inside = name
        return line_end + 1

    def is_complete(self) -> bool:
        """True when the dump's last line is mariadb-dump's completion marker."""
        last_line = self._tail.rstrip().rsplit(b"\n", 1)[-1]
        return last_line.startswith(COMPLETION_MARKER)


def count_tuples(values: bytes) -> int:
    """Rows in one line of an INSERT after the table name: `` (`a`) VALUES (1,'x'),(2,'y');``."""
    bare = QUOTED.sub(b"", values)
    count = bare.count(b"(")
    if bare.lstrip().startswith(b"("):
        count -= 1  # a column list, not a row
    return count


def stream_dump(process: Process, reader: DumpReader, what: str) -> Iterator[bytes]:
    """The dump's stdout in chunks, read as it passes; SourceError unless it ended complete."""
    # os.read returns whatever the pipe holds, so chunks flow as the dump is written.
    while chunk := os.read(process.stdout.fileno(), CHUNK_SIZE):
        reader.feed(chunk)
        yield chunk
    try:
        process.finish()
    except ToolError as error:
        raise SourceError(f"{what} failed: {error.message}") from None
    if not reader.is_complete():
        raise SourceError(
            f"{what} is incomplete: it does not end with '-- Dump completed'",
            hint="the dump tool stopped early or runs with --skip-comments; run the backup again",
        )


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
            # Not in the dump's snapshot: DDL is not transactional here anyway.
            schema_sha256 = hash_schema(connection, database)
            version = server_version(connection)
        program = pick_program(DUMP_PROGRAMS)
        versions = {Path(program).name: tool_version(program)}
        reader = DumpReader()
        # reader.rows fills as the stream passes; complete once the chunks are exhausted.
        fingerprint = {
            "tables": reader.rows,
            "schema_sha256": schema_sha256,
            "server_version": version,
        }
        with tempfile.TemporaryDirectory(prefix="drkit-") as directory:  # mkdtemp: mode 0700
            option_file = write_option_file(Path(directory), password) if password else None
            command = make_dump_command(self.url, option_file=option_file, program=program)
            with Process(command) as process:
                yield Capture(
                    chunks=stream_dump(process, reader, f"{Path(program).name} of {self.name}"),
                    fingerprint=fingerprint,
                    extension="sql",
                    tool_versions=versions,
                    format="mysqldump-sql",
                )

    def is_target_empty(self, target: Target) -> bool:
        contents = self._contents(target)
        return contents is None or not any(contents[:3])

    def describe_target(self, target: Target) -> str:
        contents = self._contents(target)
        database = parse_database_url(target.location).database
        if contents is None:
            return f"database {database} does not exist"
        relations, routines, events, megabytes = contents
        return (
            f"database {database}: {relations} tables and views, {routines} routines, "
            f"{events} events, {megabytes:.1f} MB"
        )

    def _contents(self, target: Target) -> tuple[int, int, int, float] | None:
        url = parse_database_url(target.location)
        database = url.require_database()
        with connect(url, target.password, database=False) as connection:
            if not _database_exists(connection, database):
                return None
            [(relations, megabytes)] = fetch_all(
                connection,
                "SELECT COUNT(*), COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) / 1e6"
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
        return int(relations), int(routines), int(events), float(megabytes)

    def restore(self, stream: IO[bytes], target: Target, *, replace: bool = False) -> None:
        url = parse_database_url(target.location)
        self._prepare_database(url, target.password, replace=replace)
        program = pick_program(CLIENT_PROGRAMS)
        with tempfile.TemporaryDirectory(prefix="drkit-") as directory:  # mkdtemp: mode 0700
            password = target.password
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
                        hint="the target database is left as the client stopped; restore "
                        "again with --force to replace it",
                    ) from None

    def _prepare_database(
        self, url: DatabaseUrl, password: Secret | None, *, replace: bool
    ) -> None:
        """Create the target database, dropping it first when ``replace``."""
        database = url.require_database()
        with connect(url, password, database=False) as connection, connection.cursor() as cursor:
            if replace:
                log.info("dropping database %s before restoring into it", database)
                cursor.execute(f"DROP DATABASE IF EXISTS {quote_name(database)}")
            cursor.execute(
                f"CREATE DATABASE IF NOT EXISTS {quote_name(database)} CHARACTER SET utf8mb4"
            )

    def fingerprint_target(self, target: Target, like: Fingerprint) -> Fingerprint:
        url = parse_database_url(target.location)
        database = url.require_database()
        with connect(url, target.password) as connection:
            fingerprint: Fingerprint = {
                "tables": count_rows(connection, database),
                "schema_sha256": hash_schema(connection, database),
                "server_version": server_version(connection),
            }
        return {key: value for key, value in fingerprint.items() if not like or key in like}

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
