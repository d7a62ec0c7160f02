"""Content digests per table, taken from the pg_dump stream as it passes through a backup (no
extra query on the production server) and recomputed from a restored database.

A custom-format archive written to a pipe (``pg_dump -Fc -Z0``) is a header, the table of
contents, then one data block per table in TOC order: a block-type byte (1), the entry's dump
id, and the COPY text of the table as chunks framed by a sign byte and a 4-byte little-endian
length (pg_dump writes one row per chunk), ending with the ``\\.`` line and a zero length. The
digest of a table is a checksum (``Checksum``) of that framed block, so capture is one ``find``
and one checksum update per chunk at C speed, whatever the row count. Verification frames the rows
``COPY ... TO STDOUT`` yields the same way, with the session settings pg_dump uses.

Anything unexpected in the stream (another archive version, large-object blocks, an unknown
block) stops digesting quietly: tables without a digest are verified by row count as before.
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import TupleRow

log = logging.getLogger(__name__)
Connection = psycopg.Connection[TupleRow]

BLOCK_DATA = 1
#: How every COPY data block ends: the chunk ``\.\n\n\n`` (a row never holds a raw newline
#: or a NUL byte, so this cannot occur inside the data) and the zero-length terminator.
END_OF_DATA = b"\x00\x05\x00\x00\x00\\.\n\n\n" + b"\x00\x00\x00\x00\x00"
#: Chunks smaller than this are joined to the kept tail (a copy that costs nothing).
SMALL_CHUNK = 1 << 12
KNOWN_VERSIONS = {(1, 14), (1, 15), (1, 16)}
#: Session settings pg_dump uses for COPY, so the restored text is byte for byte the same.
COPY_SETTINGS = {
    "DateStyle": "ISO",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "TimeZone": "UTC",
}


class Checksum:
    """CRC-32 and byte count of a table's framed COPY data: ``crc32:<hex>:<bytes>``.

    Not a cryptographic hash, on purpose: the snapshot itself is authenticated by its sealed
    manifest, and this only has to tell whether a restored table holds the same bytes.
    CRC-32 detects every change of up to 32 consecutive bits (a changed value) and misses a
    random difference once in 4 billion tables, at 3 times sha256's speed, which keeps the
    digests under 5% of a backup (bench/RESULTS.md, "PostgreSQL per-table content digests")."""

    def __init__(self) -> None:
        self.crc, self.size = 0, 0

    def update(self, data: bytes | memoryview) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)

    def hexdigest(self) -> str:
        return f"crc32:{self.crc:08x}:{self.size}"


class _Incomplete(Exception):
    """More bytes are needed."""


class _Unexpected(Exception):
    """The stream is not what this reader knows; stop digesting."""


class _Reader:
    def __init__(self, data: bytes | bytearray) -> None:
        self.data, self.position, self.int_size = data, 0, 4

    def take(self, count: int) -> bytes:
        end = self.position + count
        if end > len(self.data):
            raise _Incomplete
        piece = bytes(self.data[self.position : end])
        self.position = end
        return piece

    def byte(self) -> int:
        return self.take(1)[0]

    def integer(self) -> int:
        sign = self.byte()
        value = int.from_bytes(self.take(self.int_size), "little")
        return -value if sign else value

    def text(self) -> str | None:
        length = self.integer()
        return None if length < 0 else self.take(length).decode("utf-8", "replace")


def _read_table_of_contents(reader: _Reader) -> dict[int, str]:
    """Header and TOC; the ``schema.table`` of each TABLE DATA entry by dump id."""
    if reader.take(5) != b"PGDMP":
        raise _Unexpected
    version = (reader.byte(), reader.byte())
    reader.byte()
    reader.int_size, offset_size, archive_format = reader.byte(), reader.byte(), reader.byte()
    if version not in KNOWN_VERSIONS or reader.int_size != 4 or archive_format != 1:
        raise _Unexpected
    if version >= (1, 15):
        reader.byte()  # compression algorithm
    else:
        reader.integer()  # compression level
    for _ in range(7):  # the dump's time
        reader.integer()
    for _ in range(3):  # database name, server version, pg_dump version
        reader.text()
    tables = {}
    for _ in range(reader.integer()):
        dump_id = reader.integer()
        reader.integer()  # has data
        reader.text(), reader.text()  # catalog id: table oid, oid
        tag, description = reader.text(), reader.text()
        reader.integer()  # section
        for _ in range(3):  # definition, drop and copy statements
            reader.text()
        namespace = reader.text()
        reader.text(), reader.text()  # tablespace, table access method
        if version >= (1, 16):
            reader.integer()  # relkind
        reader.text()  # owner
        reader.text()  # "false" (WITH OIDS)
        while reader.text() is not None:  # dependencies
            pass
        reader.take(1 + offset_size)  # data offset (not set in a piped archive)
        if description == "TABLE DATA":
            tables[dump_id] = f"{namespace}.{tag}"
    return tables


class StreamDigests:
    """Fed the archive's chunks in order; ``digests`` once the stream ended."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.tables: dict[int, str] | None = None
        self.stopped = False
        self.current: tuple[str, Checksum] | None = None  # table, its checksum so far
        self.digests: dict[str, str] = {}
        self._next_attempt = 1 << 16

    def feed(self, chunk: bytes) -> None:
        if self.stopped:
            return
        try:
            self._feed(chunk)
        except _Unexpected:
            log.debug("content digests stop: the archive holds what drkit does not read")
            self.stopped = True
            self.buffer = bytearray()

    def _feed(self, chunk: bytes) -> None:
        if self.tables is None:
            self.buffer += chunk
            if len(self.buffer) < self._next_attempt:
                return
            reader = _Reader(self.buffer)
            try:
                self.tables = _read_table_of_contents(reader)
            except _Incomplete:
                self._next_attempt = len(self.buffer) * 2
                return
            rest = bytes(self.buffer[reader.position :])
            self.buffer = bytearray()
            self._feed_blocks(rest)
        else:
            self._feed_blocks(chunk)

    def finish(self) -> dict[str, str]:
        """The digests of every table whose block ended; call after the last chunk."""
        if self.tables is None and not self.stopped:
            self._next_attempt = 0
            self._feed(b"")
        return dict(self.digests)

    def _feed_blocks(self, data: bytes) -> None:
        while data and not self.stopped:
            if self.current is None:
                self.buffer += data
                if len(self.buffer) < 6:
                    return
                reader = _Reader(self.buffer)
                if reader.byte() != BLOCK_DATA:
                    raise _Unexpected  # large objects come last: nothing more to digest
                dump_id = reader.integer()
                name = self.tables.get(dump_id) if self.tables else None
                if name is None:
                    raise _Unexpected
                self.current = (name, Checksum())
                data = bytes(self.buffer[reader.position :])
                self.buffer = bytearray()
                continue
            data = self._feed_data(data)

    def _feed_data(self, data: bytes) -> bytes:
        """Hash ``data`` into the current block; the bytes after the block's end."""
        assert self.current is not None
        name, digest = self.current
        # The end marker may straddle chunks: the last bytes of a chunk stay unhashed until the
        # next one shows whether they start it. Big chunks are not copied: only the kept tail
        # is joined to the head of the next.
        keep = len(END_OF_DATA) - 1
        tail = bytes(self.buffer)
        if len(data) < SMALL_CHUNK:
            data, tail = tail + data, b""
        end = (tail + data[:keep]).find(END_OF_DATA) if tail else -1
        if end >= 0:
            end += len(END_OF_DATA) - len(tail)  # where the marker ends, in data
        else:
            end = data.find(END_OF_DATA)
            end = end + len(END_OF_DATA) if end >= 0 else -1
        digest.update(tail)
        view = memoryview(data)
        if end < 0:
            cut = max(0, len(data) - keep)
            digest.update(view[:cut])
            self.buffer = bytearray(view[cut:])
            return b""
        digest.update(view[:end])
        self.digests[name] = digest.hexdigest()
        self.current = None
        self.buffer = bytearray()
        return bytes(view[end:])


class BackgroundDigests:
    """``StreamDigests`` in a thread of its own, fed about a megabyte at a time, so that the
    checksums (zlib releases the GIL) run beside the backup's compression and encryption
    instead of in front of them. Use as a context manager; ``finish`` waits for the result."""

    BATCH_BYTES = 1 << 20

    def __init__(self) -> None:
        self.reader = StreamDigests()
        self.batches: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=8)
        self.batch: list[bytes] = []
        self.batch_size = 0
        self.thread = threading.Thread(target=self._run, name="drkit-digests", daemon=True)

    def __enter__(self) -> BackgroundDigests:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.thread.is_alive():
            self.batches.put(None)
            self.thread.join()

    def _run(self) -> None:
        while (batch := self.batches.get()) is not None:
            try:
                for chunk in batch:
                    self.reader.feed(chunk)
            except Exception:  # never block the backup: drain the queue, digest nothing more
                log.exception("content digests stopped")
                self.reader.stopped = True
                self.reader.digests.clear()

    def feed(self, chunk: bytes) -> None:
        self.batch.append(chunk)
        self.batch_size += len(chunk)
        if self.batch_size >= self.BATCH_BYTES:
            self.batches.put(self.batch)
            self.batch, self.batch_size = [], 0

    def finish(self) -> dict[str, str]:
        """The digests, once every chunk fed so far is read."""
        if self.batch:
            self.batches.put(self.batch)
            self.batch, self.batch_size = [], 0
        self.batches.put(None)
        self.thread.join()
        return self.reader.finish()


# --- recomputed from a database ----------------------------------------------------------------

COLUMNS_QUERY = """
    SELECT a.attname FROM pg_attribute a
    WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attgenerated = ''
    ORDER BY a.attnum"""


def table_digest(connection: Connection, table: str) -> str:
    """The checksum of ``schema.table`` framed as pg_dump frames its COPY data."""
    schema, _, name = table.partition(".")
    identifier = pgsql.Identifier(schema, name)
    relation = identifier.as_string(connection)
    columns = [str(row[0]) for row in connection.execute(COLUMNS_QUERY, (relation,)).fetchall()]
    column_list = pgsql.SQL(", ").join(pgsql.Identifier(column) for column in columns)
    copy = pgsql.SQL("COPY {} ({}) TO STDOUT").format(identifier, column_list)
    if not columns:
        copy = pgsql.SQL("COPY {} TO STDOUT").format(identifier)
    digest = Checksum()
    pending = b""
    with connection.cursor() as cursor, cursor.copy(copy) as stream:
        for block in stream:
            lines = (pending + bytes(block)).split(b"\n")
            pending = lines.pop()
            for line in lines:
                digest.update(b"\x00" + (len(line) + 1).to_bytes(4, "little") + line + b"\n")
    digest.update(END_OF_DATA)
    return digest.hexdigest()


def take_digests(connection: Connection, tables: list[str]) -> dict[str, str]:
    """Digests of ``tables`` in the connection's transaction, with pg_dump's COPY settings."""
    encoding = connection.execute(
        "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    settings = {**COPY_SETTINGS, "client_encoding": str(encoding[0]) if encoding else "UTF8"}
    for name, value in settings.items():
        connection.execute("SELECT set_config(%s, %s, true)", (name, value))
    digests = {}
    for table in tables:
        try:
            digests[table] = table_digest(connection, table)
        except psycopg.errors.UndefinedTable:
            digests[table] = "missing"
    return digests
