"""PostgreSQL databases: captured with pg_dump in an exported snapshot, restored with pg_restore.

A capture is a custom-format archive (``pg_dump -Fc -Z0``): drkit compresses it itself, and the
custom format lets ``pg_restore -j`` load tables in parallel. Row counts and the schema hash are
taken inside the same REPEATABLE READ transaction whose snapshot pg_dump imports, so the
fingerprint describes exactly the data in the archive. Restores always use ``--no-owner
--no-privileges``: a restore target (a sandbox, another server) rarely has the same roles, and
a restore must not fail for a missing role. docs/sources.md records the measurements behind
these choices.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import IO, NamedTuple

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import TupleRow

from drkit.errors import SourceError, ToolError
from drkit.execute import Command, Process, find_program, run
from drkit.plan.schema import PostgresqlSource
from drkit.secrets import Secret, SecretRef
from drkit.sources.base import Capture, Fingerprint, Target
from drkit.sources.urls import DatabaseUrl, parse_database_url

log = logging.getLogger(__name__)
Connection = psycopg.Connection[TupleRow]

CHUNK_SIZE = 1 << 20
ARCHIVE_MAGIC = b"PGDMP"
LARGE_OBJECTS_TABLE = "pg_catalog.pg_largeobject_metadata"
CONNECT_TIMEOUT_SECONDS = 15
USER_SCHEMAS = "n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"


def _not_extension_member(catalog: str, oid: str) -> str:
    # Objects an extension created come back with CREATE EXTENSION, not from the dump.
    return (
        f"NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass"
        f" AND d.objid = {oid} AND d.deptype = 'e')"
    )


#: Canonical schema description: each query yields text rows; the hash covers them, sorted.
#: Owners, privileges, OIDs and the database name are left out so a restored copy (made with
#: --no-owner --no-privileges, maybe under another name) hashes the same as its source.
SCHEMA_QUERIES: dict[str, str] = {
    "schema": f"SELECT n.nspname FROM pg_namespace n WHERE {USER_SCHEMAS}",
    "extension": "SELECT extname FROM pg_extension",
    "relation": f"""
        SELECT n.nspname, c.relname, c.relkind, c.relpersistence, c.relrowsecurity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND {USER_SCHEMAS}
          AND {_not_extension_member("pg_class", "c.oid")}""",
    "column": f"""
        SELECT n.nspname, c.relname, row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
               a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
               a.attgenerated, coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''),
               coalesce(co.collname, '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
          AND {USER_SCHEMAS} AND {_not_extension_member("pg_class", "c.oid")}""",
    "constraint": f"""
        SELECT n.nspname, coalesce(c.relname, t.typname, ''), con.conname, con.contype,
               pg_get_constraintdef(con.oid)
        FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
        LEFT JOIN pg_class c ON c.oid = con.conrelid LEFT JOIN pg_type t ON t.oid = con.contypid
        WHERE {USER_SCHEMAS}""",
    "index": f"""
        SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMAS} AND {_not_extension_member("pg_class", "i.indrelid")}""",
    "view": f"""
        SELECT n.nspname, c.relname, pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND {USER_SCHEMAS}
          AND {_not_extension_member("pg_class", "c.oid")}""",
    "function": f"""
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind,
               CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE '' END
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {USER_SCHEMAS} AND {_not_extension_member("pg_proc", "p.oid")}""",
    "sequence": f"""
        SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
               s.seqmin, s.seqmax, s.seqcache, s.seqcycle
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMAS} AND {_not_extension_member("pg_class", "c.oid")}""",
    "trigger": f"""
        SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND {USER_SCHEMAS}""",
    "type": f"""
        SELECT n.nspname, t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod),
               coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                         FROM pg_enum e WHERE e.enumtypid = t.oid), '')
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype IN ('e', 'd', 'r') AND {USER_SCHEMAS}
          AND {_not_extension_member("pg_type", "t.oid")}""",
    "policy": f"""
        SELECT n.nspname, c.relname, p.polname, p.polcmd, p.polpermissive,
               coalesce(pg_get_expr(p.polqual, p.polrelid), ''),
               coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS}""",
    "rule": """
        SELECT n.schemaname, n.tablename, n.rulename, n.definition
        FROM pg_rules n WHERE n.schemaname <> 'information_schema'
          AND n.schemaname !~ '^pg_'""",
}

USER_TABLES_QUERY = f"""
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND {USER_SCHEMAS} AND {_not_extension_member("pg_class", "c.oid")}
    ORDER BY 1, 2"""

CONTENTS_QUERY = f"""
    SELECT
      (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS}),
      (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('v', 'm', 'S', 'f') AND {USER_SCHEMAS}),
      (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
       WHERE {USER_SCHEMAS} AND {_not_extension_member("pg_proc", "p.oid")}),
      (SELECT count(*) FROM pg_largeobject_metadata),
      pg_size_pretty(pg_database_size(current_database()))"""


# --- commands (pure) ---------------------------------------------------------------------------


def tool_environment(password: Secret | None) -> dict[str, str]:
    """Environment for pg_dump/pg_restore: the password (never argv) and a connect timeout."""
    environment = {"PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS), "PGAPPNAME": "drkit"}
    if password is not None:
        environment["PGPASSWORD"] = password.reveal()
    return environment


def make_dump_command(
    url: DatabaseUrl, *, snapshot_id: str, password: Secret | None, program: str = "pg_dump"
) -> Command:
    """pg_dump writing an uncompressed custom archive of ``url`` to stdout, in ``snapshot_id``."""
    return Command(
        argv=(
            program,
            "--format=custom",
            "--compress=0",  # drkit compresses (zstd) after the dump
            "--blobs",  # large objects too, whatever other selection flags say
            f"--snapshot={snapshot_id}",  # see what the fingerprint saw
            f"--dbname={url}",
        ),
        env=tool_environment(password),
    )


def make_restore_command(
    url: DatabaseUrl,
    archive: Path,
    *,
    jobs: int,
    password: Secret | None,
    program: str = "pg_restore",
) -> Command:
    """pg_restore loading ``archive`` into the existing, empty database at ``url``."""
    return Command(
        argv=(
            program,
            f"--jobs={jobs}",
            # The target's roles may differ from the source's (sandbox, other server).
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            f"--dbname={url}",
            str(archive),
        ),
        env=tool_environment(password),
    )


# --- fingerprint -------------------------------------------------------------------------------


def count_rows(connection: Connection) -> dict[str, int]:
    """Exact row count of every user table (``schema.table``) plus the large-object count."""
    counts: dict[str, int] = {}
    for schema, table in connection.execute(USER_TABLES_QUERY).fetchall():
        query = pgsql.SQL("SELECT count(*) FROM {}.{}").format(
            pgsql.Identifier(str(schema)), pgsql.Identifier(str(table))
        )
        row = connection.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    row = connection.execute("SELECT count(*) FROM pg_catalog.pg_largeobject_metadata").fetchone()
    counts[LARGE_OBJECTS_TABLE] = int(row[0]) if row else 0
    return counts


def hash_schema(connection: Connection) -> str:
    """sha256 over a canonical, sorted description of the database's user-defined schema."""
    # An empty search_path makes every deparsed name schema-qualified, hence comparable.
    connection.execute("SELECT set_config('search_path', '', true)")
    lines: list[str] = []
    for kind, query in SCHEMA_QUERIES.items():
        for row in connection.execute(query).fetchall():
            lines.append("\t".join([kind, *("" if value is None else str(value) for value in row)]))
    digest = hashlib.sha256()
    for line in sorted(lines):
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def take_fingerprint(connection: Connection) -> Fingerprint:
    """Row counts, schema hash and server version, all seen in the connection's transaction."""
    row = connection.execute("SHOW server_version").fetchone()
    return {
        "tables": count_rows(connection),
        "schema_sha256": hash_schema(connection),
        "server_version": str(row[0]).split()[0] if row else "",
    }


# --- the source --------------------------------------------------------------------------------


@cache
def tool_version(program: str) -> str:
    """``15.4`` from ``pg_dump (PostgreSQL) 15.4 (Debian ...)``."""
    words = run(Command((program, "--version"))).stdout.decode("utf-8", "replace").split()
    return words[2] if len(words) > 2 else " ".join(words)


def connect(url: DatabaseUrl, password: Secret | None) -> Connection:
    """An autocommit connection; SourceError (one line, no secret) when it cannot be opened."""
    try:
        return psycopg.connect(
            str(url),
            password=password.reveal() if password is not None else None,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="drkit",
        )
    except psycopg.Error as error:
        raise SourceError(
            f"cannot connect to {url}: {_first_line(error)}",
            hint="check the URL, that the server is up, and the password reference",
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def stream_dump(process: Process, what: str) -> Iterator[bytes]:
    """The dump's stdout in chunks; SourceError when pg_dump fails or ends abnormally."""
    first = True
    # os.read returns whatever the pipe holds, so chunks flow as pg_dump writes them.
    while chunk := os.read(process.stdout.fileno(), CHUNK_SIZE):
        if first and not chunk.startswith(ARCHIVE_MAGIC[: len(chunk)]):
            raise SourceError(f"{what}: pg_dump wrote something other than a custom archive")
        first = False
        yield chunk
    try:
        process.finish()
    except ToolError as error:
        raise SourceError(f"{what} failed: {error.message}") from None
    if first:
        raise SourceError(f"{what}: pg_dump wrote nothing")


class DatabaseContents(NamedTuple):
    """What a database holds, for emptiness checks and --force messages."""

    tables: int
    relations: int  # views, materialized views, sequences, foreign tables
    functions: int
    large_objects: int
    size: str

    def is_empty(self) -> bool:
        return not (self.tables or self.relations or self.functions or self.large_objects)


class PostgresqlDatabase:
    """A PostgreSQL database named by a plan's ``postgresql`` source."""

    type = "postgresql"

    def __init__(self, spec: PostgresqlSource) -> None:
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
        with connect(self.url, password) as connection:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = connection.execute("SELECT pg_export_snapshot()").fetchone()
            snapshot_id = str(row[0]) if row else ""
            fingerprint = take_fingerprint(connection)
            program = find_program("pg_dump", version_dir=_major(connection))
            versions = {"pg_dump": tool_version(program)}
            command = make_dump_command(
                self.url, snapshot_id=snapshot_id, password=password, program=program
            )
            # The transaction stays open until pg_dump is done: its snapshot lives as long.
            with Process(command) as process:
                yield Capture(
                    chunks=stream_dump(process, f"pg_dump of {self.name}"),
                    fingerprint=fingerprint,
                    extension="pgdump",
                    tool_versions=versions,
                    format="pg_dump-custom",
                )

    def is_target_empty(self, target: Target) -> bool:
        contents = self._contents(target)
        return contents is None or contents.is_empty()

    def describe_target(self, target: Target) -> str:
        contents = self._contents(target)
        database = parse_database_url(target.location).database
        if contents is None:
            return f"database {database} does not exist"
        return (
            f"database {database}: {contents.tables} tables, {contents.relations} "
            f"views/sequences, {contents.functions} functions, {contents.large_objects} "
            f"large objects, {contents.size}"
        )

    def _contents(self, target: Target) -> DatabaseContents | None:
        url = parse_database_url(target.location)
        with connect(_maintenance_url(url), target.password) as connection:
            if not _database_exists(connection, url.require_database()):
                return None
        with connect(url, target.password) as connection:
            row = connection.execute(CONTENTS_QUERY).fetchone()
        assert row is not None
        tables, relations, functions, large_objects, size = row
        return DatabaseContents(
            int(tables), int(relations), int(functions), int(large_objects), str(size)
        )

    def restore(self, stream: IO[bytes], target: Target, *, replace: bool = False) -> None:
        url = parse_database_url(target.location)
        major = self._prepare_database(url, target.password, replace=replace)
        with tempfile.TemporaryDirectory(prefix="drkit-") as directory:  # mkdtemp: mode 0700
            archive = Path(directory) / "restore.pgdump"
            with archive.open("wb") as staged:
                # pg_restore -j needs a seekable file; a pipe restores with one job only.
                while chunk := stream.read(CHUNK_SIZE):
                    staged.write(chunk)
            program = find_program("pg_restore", version_dir=major)
            command = make_restore_command(
                url, archive, jobs=self.spec.jobs, password=target.password, program=program
            )
            try:
                run(command)
            except ToolError as error:
                raise SourceError(
                    f"restoring {self.name} into {url.database} failed: {error.message}",
                    hint="the target database is left as pg_restore stopped; restore again "
                    "with --force to replace it",
                ) from None

    def _prepare_database(self, url: DatabaseUrl, password: Secret | None, *, replace: bool) -> str:
        """Create the target database (dropping it first when ``replace``); the server major."""
        name = url.require_database()
        database = pgsql.Identifier(name)
        with connect(_maintenance_url(url), password) as connection:
            exists = _database_exists(connection, name)
            if exists and replace:
                log.info("dropping database %s before restoring into it", url.database)
                # FORCE (PostgreSQL 13+) ends sessions still connected to the old database.
                force = " WITH (FORCE)" if connection.info.server_version >= 130000 else ""
                connection.execute(pgsql.SQL("DROP DATABASE {}" + force).format(database))
            if replace or not exists:
                # template0: nothing a local template1 holds may collide with the dump.
                create = pgsql.SQL("CREATE DATABASE {} TEMPLATE template0").format(database)
                connection.execute(create)
            return _major(connection)

    def fingerprint_target(self, target: Target, like: Fingerprint) -> Fingerprint:
        url = parse_database_url(target.location)
        with connect(url, target.password) as connection:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            fingerprint = take_fingerprint(connection)
            connection.execute("ROLLBACK")
        return {key: value for key, value in fingerprint.items() if not like or key in like}

    def query(self, target: Target, sql: str) -> object:
        url = parse_database_url(target.location)
        with connect(url, target.password) as connection:
            connection.execute("BEGIN READ ONLY")
            try:
                row = connection.execute(sql.encode("utf-8")).fetchone()
            except psycopg.Error as error:
                raise SourceError(f"query on {url.database} failed: {_first_line(error)}") from None
            finally:
                connection.execute("ROLLBACK")
        return row[0] if row else None


def _maintenance_url(url: DatabaseUrl) -> DatabaseUrl:
    # CREATE/DROP DATABASE cannot run inside the database they act on.
    return url.with_database("template1" if url.database == "postgres" else "postgres")


def _database_exists(connection: Connection, name: str) -> bool:
    query = "SELECT 1 FROM pg_database WHERE datname = %s"
    return connection.execute(query, (name,)).fetchone() is not None


def _major(connection: Connection) -> str:
    return str(connection.info.server_version // 10000)
