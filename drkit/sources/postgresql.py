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
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import IO, Any, NamedTuple

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import TupleRow

from drkit.errors import SourceError, ToolError
from drkit.execute import Command, Process, find_program, run
from drkit.plan.schema import PostgresqlSource
from drkit.secrets import Secret, SecretRef
from drkit.sources.base import LARGE_OBJECTS_TABLE, Capture, Fingerprint, Restored, Target
from drkit.sources.pg_digest import BackgroundDigests, take_digests
from drkit.sources.pg_fidelity import plan_roles, take_fidelity, take_role_credentials
from drkit.sources.pgarchive import seekable_archive
from drkit.sources.urls import DatabaseUrl, parse_database_url
from drkit.units import humanize_bytes

log = logging.getLogger(__name__)
Connection = psycopg.Connection[TupleRow]

CHUNK_SIZE = 1 << 20
ARCHIVE_MAGIC = b"PGDMP"
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
      pg_database_size(current_database())"""


# --- commands (pure) ---------------------------------------------------------------------------


def tool_environment() -> dict[str, str]:
    """Settings for pg_dump/pg_restore: a connect timeout and drkit's application name."""
    return {"PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS), "PGAPPNAME": "drkit"}


def password_file(password: Secret | None) -> dict[str, Secret]:
    """The password as a one-line PGPASSFILE matching any server (never argv or environment)."""
    if password is None:
        return {}
    value = password.reveal()
    if "\n" in value or "\r" in value:
        raise SourceError("a PostgreSQL password must not contain a line break")
    escaped = value.replace("\\", "\\\\").replace(":", "\\:")
    return {"PGPASSFILE": Secret(f"*:*:*:*:{escaped}\n")}


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
        # timestamptz in COPY text depends on the session's zone; digests assume UTC
        env={**tool_environment(), "PGTZ": "UTC"},
        secret_files=password_file(password),
    )


def make_restore_command(
    url: DatabaseUrl,
    archive: Path,
    *,
    jobs: int,
    password: Secret | None,
    program: str = "pg_restore",
    keep_owners: bool = False,
    use_list: Path | None = None,
) -> Command:
    """pg_restore loading ``archive`` into the existing, empty database at ``url``; with
    ``keep_owners`` the archive's owners and privileges too (its roles exist there)."""
    # Without them, a target lacking the source's roles (sandbox, other server) still loads.
    without_roles = () if keep_owners else ("--no-owner", "--no-privileges")
    selection = (f"--use-list={use_list}",) if use_list is not None else ()
    return Command(
        argv=(
            program,
            f"--jobs={jobs}",
            *without_roles,
            *selection,
            "--exit-on-error",
            f"--dbname={url}",
            str(archive),
        ),
        env=tool_environment(),
        secret_files=password_file(password),
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


def take_full_fingerprint(connection: Connection) -> Fingerprint:
    """The fingerprint and what a faithful restore needs (``pg_fidelity``), in one snapshot."""
    return take_fingerprint(connection) | take_fidelity(connection)


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


def digesting(chunks: Iterator[bytes], fingerprint: Fingerprint) -> Iterator[bytes]:
    """The chunks, passed on unchanged; once they ended, the content digest of every table
    (``digests``) is added to ``fingerprint``."""
    with BackgroundDigests() as digests:
        for chunk in chunks:
            digests.feed(chunk)
            yield chunk
        fingerprint["digests"] = digests.finish()


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


class Beside:
    """``work(connection)`` on a thread of its own while the dump streams: the exporting
    transaction's connection is free once pg_dump has the snapshot id, and the two overlap
    instead of adding up. Leaving early cancels the query and waits for the thread."""

    def __init__(self, work: Callable[[Connection], Fingerprint], connection: Connection):
        self._work, self._connection = work, connection
        self._result: Fingerprint | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fingerprint", daemon=True)

    def _run(self) -> None:
        try:
            self._result = self._work(self._connection)
        except BaseException as error:
            self._error = error

    def __enter__(self) -> Beside:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread.is_alive():
            with suppress(psycopg.Error):
                self._connection.cancel_safe()
        self._thread.join()

    def complete(self, chunks: Iterator[bytes], into: Fingerprint) -> Iterator[bytes]:
        """``chunks``, then the work's result written ``into`` once the dump has ended."""
        yield from chunks
        self._thread.join()
        if isinstance(self._error, psycopg.Error):
            raise SourceError(f"fingerprint failed: {_first_line(self._error)}") from None
        if self._error is not None:
            raise self._error
        into.update(self._result or {})


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
            private, warnings = (
                take_role_credentials(connection) if self.spec.role_passwords else ({}, [])
            )
            program = find_program("pg_dump", version_dir=_major(connection))
            versions = {"pg_dump": tool_version(program)}
            command = make_dump_command(
                self.url, snapshot_id=snapshot_id, password=password, program=program
            )
            # The transaction stays open until pg_dump is done: its snapshot lives as long.
            # The fingerprint is taken in it while pg_dump runs, not before (same snapshot),
            # and the content digests from the stream as it passes.
            fingerprint: Fingerprint = {}
            with Process(command) as process, Beside(take_full_fingerprint, connection) as counting:
                chunks = stream_dump(process, f"pg_dump of {self.name}")
                yield Capture(
                    chunks=counting.complete(digesting(chunks, fingerprint), fingerprint),
                    fingerprint=fingerprint,
                    extension="pgdump",
                    tool_versions=versions,
                    format="pg_dump-custom",
                    warnings=warnings,
                    private=private,
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
            int(tables), int(relations), int(functions), int(large_objects), humanize_bytes(size)
        )

    def restore(self, stream: IO[bytes], target: Target, *, replace: bool = False) -> None:
        self.restore_faithfully(stream, target, captured={}, roles="skip", replace=replace)

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
        """Load the archive into ``target`` with the owners, privileges and database-level
        properties it holds (snapshots captured without roles: without them, as before)."""
        url = parse_database_url(target.location)
        with self._staged_archive(stream) as archive:
            with connect(_maintenance_url(url), target.password) as connection:
                major = _major(connection)
                role_plan = None
                if "roles" in captured:
                    role_plan = plan_roles(
                        connection,
                        captured,
                        roles,
                        where=f"the server of {url.database}",
                        credentials=private,
                    )
            from drkit.sources.pg_load import ArchiveLoader

            program = find_program("pg_restore", version_dir=major)
            loader = ArchiveLoader(self.name, url, target.password, archive, program)
            with tempfile.TemporaryDirectory(prefix="drkit-") as folder:  # mkdtemp: mode 0700
                restored = loader.load(
                    role_plan, captured, jobs=self.spec.jobs, replace=replace, folder=Path(folder)
                )
        if captured and role_plan is None:
            restored.left_out.append(
                "owners and privileges: the snapshot was taken before drkit recorded the roles "
                "they name (0.1); objects are owned by the restoring user"
            )
        return restored

    @contextmanager
    def _staged_archive(self, stream: IO[bytes]) -> Iterator[Path]:
        """The archive as a file pg_restore -j can seek in, with data offsets (a file it can
        use well); a full disk is one line naming it."""
        with ExitStack() as stack:
            try:
                archive = stack.enter_context(seekable_archive(stream))
            except OSError as error:
                raise SourceError(
                    f"cannot stage {self.name}'s archive for pg_restore: {error.strerror}",
                    hint="free space in the staging folder (or point TMPDIR at a larger file "
                    "system) and restore again; the target is unchanged",
                ) from None
            yield archive

    def fingerprint_target(self, target: Target, like: Fingerprint) -> Fingerprint:
        url = parse_database_url(target.location)
        with connect(url, target.password) as connection:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            fingerprint = take_fingerprint(connection)
            if not like or "privileges" in like or "database" in like:
                fingerprint |= take_fidelity(connection)
            if like.get("digests"):
                fingerprint["digests"] = take_digests(connection, sorted(like["digests"]))
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
