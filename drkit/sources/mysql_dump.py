"""Reading a mariadb-dump/mysqldump stream as it passes, without holding it: rows per table
(what a restore will load), a digest of each table's rows, and the completion marker. The
capture reads the source's dump this way; verification reads a restored copy's dump the same
way, so both digests come from the same reader over the same layout.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from drkit.errors import SourceError, ToolError
from drkit.execute import Process

CHUNK_SIZE = 1 << 20
COMPLETION_MARKER = b"-- Dump completed"

#: Lines of a dump that matter for row counts. Inside DELIMITER blocks (routines, triggers,
#: events) a line may look like an INSERT or CREATE TABLE without being one.
DUMP_LINE = re.compile(
    rb"^(?:(?P<delimiter>DELIMITER ;;$)|(?:(?P<create>CREATE TABLE )"
    rb"|(?:INSERT|REPLACE)(?: IGNORE)? INTO )`(?P<name>(?:[^`]|``)+)`)",
    re.MULTILINE,
)
#: The comments --master-data=2 --gtid write: the binlog coordinates of the dump's snapshot.
BINLOG_FILE_LINE = re.compile(
    rb"^-- CHANGE MASTER TO MASTER_LOG_FILE='(?P<file>[^']+)', MASTER_LOG_POS=(?P<position>\d+);",
    re.MULTILINE,
)
GTID_LINE = re.compile(rb"^-- SET GLOBAL gtid_slave_pos='(?P<gtid>[^']*)';", re.MULTILINE)
#: String literals and quoted identifiers; the dump escapes newlines inside them as \n.
QUOTED = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'|`[^`]*`")


class DumpReader:
    """Follows a dump stream as it passes: rows per table (what a restore will load), a sha256
    of each table's row lines (``content``, after ``finish``) and the completion marker.

    It works on complete lines: the dump escapes line breaks inside literals as ``\\n``, so
    every line start lies outside any literal. mariadb-dump 10.11 writes one row per line
    (counted with ``bytes.count``); older dumps put a whole INSERT on one line (counted with
    ``count_tuples``).
    """

    def __init__(self, binlog: dict[str, object] | None = None) -> None:
        self.rows: dict[str, int] = {}
        #: filled with file, position, gtid and time when the dump names its binlog position
        self.binlog = binlog
        #: sha256 of each table's rows as the dump writes them, filled by ``finish``
        self.content: dict[str, str] = {}
        self._digests: dict[str, Any] = {}
        self._pending = b""  # the unfinished last line
        self._tail = b""
        self._inside: str | None = None  # table of an INSERT whose rows follow line by line
        self._in_block = False  # between DELIMITER ;; and DELIMITER ; (routines, triggers)

    def feed(self, chunk: bytes) -> None:
        self._tail = (self._tail + chunk[-4096:])[-4096:]
        data = self._pending + chunk
        limit = data.rfind(b"\n") + 1
        if self.binlog is not None and "gtid" not in self.binlog:
            self._find_binlog_position(data[:limit])
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

    def _find_binlog_position(self, lines: bytes) -> None:
        assert self.binlog is not None
        if "file" not in self.binlog and (found := BINLOG_FILE_LINE.search(lines)):
            self.binlog["file"] = found["file"].decode()
            self.binlog["position"] = int(found["position"])
            # the snapshot was taken before its coordinates were written: a moment at or
            # after this one is the dump's state plus the binlog from its position
            self.binlog["time"] = datetime.now(UTC).isoformat()
        if "file" in self.binlog and (found := GTID_LINE.search(lines)):
            self.binlog["gtid"] = found["gtid"].decode()

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
        self._digest(table).update(memoryview(data)[position:stop])
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
        self._digest(name).update(rest)
        if not rest.endswith(b";"):
            self._inside = name
        return line_end + 1

    def _digest(self, table: str) -> Any:
        digest = self._digests.get(table)
        if digest is None:
            digest = self._digests[table] = hashlib.sha256()
        return digest

    def finish(self) -> None:
        """Fill ``content``: every table the dump created or filled, empty ones included."""
        for table in self.rows:
            self.content[table] = self._digest(table).hexdigest()

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
    if reader.binlog is not None and "file" not in reader.binlog:
        raise SourceError(
            f"{what} names no binary log position, which point-in-time restore starts from",
            hint="the source has pitr: but the server runs without log_bin (docs/pitr.md)",
        )
    reader.finish()
