"""A pg_dump custom archive staged for ``pg_restore -j``: a seekable file, with the data
offsets that pg_dump writes only when its own output is seekable.

pg_dump writes the table of contents (TOC) before the data. On a seekable file it goes back at
the end and rewrites the TOC with each data block's offset; through a pipe (as drkit runs it)
it cannot, so every entry says "offset not set", and each ``pg_restore -j`` worker has to scan
the archive for the blocks it restores (bench/RESULTS.md: 13.3 s against 11.2 s with offsets,
at about 1 GB). The TOC entries have a fixed-size offset field either way, so the offsets can
be patched in place: parse the header and TOC, find the data blocks (each is a type byte, a
dump id, then length-prefixed chunks up to a zero length), and write "offset set" plus the
block's position into each entry. The result is byte for byte what pg_dump would have written
to a file. Archive versions 1.12 to 1.15 (pg_dump 9.6 to 16) are understood; any other archive
is restored as it is, scanned by the workers as before.
"""

from __future__ import annotations

import logging
import mmap
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

log = logging.getLogger(__name__)
COPY_SIZE = 1 << 20
#: the archive is searched and released in windows of this size
RELEASE_BYTES = 4 << 20

MAGIC = b"PGDMP"
BLOCK_DATA, BLOCK_BLOBS = 1, 3
OFFSET_NOT_SET, OFFSET_SET, OFFSET_NO_DATA = 1, 2, 3
SUPPORTED = ((1, 12), (1, 13), (1, 14), (1, 15))


class ArchiveFormatError(ValueError):
    """Not an archive this module understands; the archive is left unchanged."""


@dataclass(frozen=True)
class IndexResult:
    offsets: dict[int, int]  # block position by dump id, as written into the TOC
    seconds: float


class _Reader:
    """Reads pg_dump's integers (sign byte + ``int_size`` little-endian bytes) and strings."""

    def __init__(self, data: mmap.mmap):
        self.data = data
        self.position = 0
        self.int_size = 4
        self._int = struct.Struct("<BI")
        self._released = 0

    def release(self, upto: int) -> None:
        """Drop the mapped pages before ``upto`` from this process (they stay in the page
        cache): the archive is read once, front to back, and must not count as drkit's
        memory (peak RSS stays bounded whatever the archive's size)."""
        start = self._released - self._released % mmap.PAGESIZE
        end = upto - upto % mmap.PAGESIZE
        if end - start >= RELEASE_BYTES and hasattr(self.data, "madvise"):
            self.data.madvise(mmap.MADV_DONTNEED, start, end - start)
            self._released = end

    def byte(self) -> int:
        value = self.data[self.position]
        self.position += 1
        return value

    def integer(self) -> int:
        if self.int_size == 4:
            sign, value = cast(tuple[int, int], self._int.unpack_from(self.data, self.position))
            self.position += 5
        else:
            sign = self.data[self.position]
            start = self.position + 1
            value = int.from_bytes(self.data[start : start + self.int_size], "little")
            self.position = start + self.int_size
        return -value if sign else value

    def encode(self, value: int) -> bytes:
        """``value`` as pg_dump writes an integer (sign byte, then little-endian bytes)."""
        return bytes([value < 0]) + abs(value).to_bytes(self.int_size, "little")

    def string(self) -> bytes | None:
        length = self.integer()
        if length < 0:
            return None
        value = self.data[self.position : self.position + length]
        self.position += length
        return value

    def skip_chunks(self) -> None:
        """Skip one data block's chunks, up to and including the zero length that ends it."""
        data, position, unpack = self.data, self.position, self._int.unpack_from
        if self.int_size != 4:
            while length := self.integer():
                self.position += length
            return
        mark = position + RELEASE_BYTES
        while True:
            _, length = unpack(data, position)
            position += 5
            if not length:
                break
            position += length
            if position > mark:
                self.release(position)
                mark = position + RELEASE_BYTES
        self.position = position


def _read_header(reader: _Reader) -> tuple[int, int]:
    """Check the archive header and move past it; (int size, offset size)."""
    if reader.data[:5] != MAGIC:
        raise ArchiveFormatError("not a custom-format archive (no PGDMP magic)")
    reader.position = 5
    major, minor, _revision = reader.byte(), reader.byte(), reader.byte()
    if (major, minor) not in SUPPORTED:
        raise ArchiveFormatError(f"archive version {major}.{minor} is not supported")
    reader.int_size, offset_size = reader.byte(), reader.byte()
    if reader.byte() != 1:  # archCustom
        raise ArchiveFormatError("not a custom-format archive")
    if (major, minor) >= (1, 15):
        reader.byte()  # compression algorithm
    else:
        reader.integer()  # compression level
    for _ in range(7):  # creation time
        reader.integer()
    for _ in range(3):  # database name, server version, pg_dump version
        reader.string()
    return reader.int_size, offset_size


@dataclass(frozen=True)
class DataEntry:
    """A TOC entry with data: where its offset field is, and its block's type."""

    dump_id: int
    offset_field: int
    kind: int


def _read_toc(reader: _Reader, offset_size: int) -> list[DataEntry]:
    """Move past the TOC; its entries that have data, in TOC order (the order pg_dump
    writes their blocks in)."""
    entries: list[DataEntry] = []
    for _ in range(reader.integer()):
        dump_id = reader.integer()
        reader.integer()  # had a data dumper
        reader.string(), reader.string(), reader.string()  # table oid, oid, tag
        description = reader.string()
        reader.integer()  # section
        for _ in range(8):  # definition, drop, copy, namespace, tablespace, table AM, owner, oids
            reader.string()
        while reader.string() is not None:  # dependencies, up to a NULL string
            pass
        flag_position = reader.position
        flag = reader.byte()
        reader.position += offset_size
        if flag in (OFFSET_NOT_SET, OFFSET_SET):
            kind = BLOCK_BLOBS if description == b"BLOBS" else BLOCK_DATA
            entries.append(DataEntry(dump_id, flag_position, kind))
        elif flag != OFFSET_NO_DATA:
            raise ArchiveFormatError(f"unexpected offset flag {flag} in TOC entry {dump_id}")
    return entries


def _find_blocks(reader: _Reader) -> dict[int, int]:
    """Walk the data blocks after the TOC; the position of each, by dump id."""
    blocks: dict[int, int] = {}
    size = len(reader.data)
    while reader.position < size:
        start = reader.position
        kind, dump_id = reader.byte(), reader.integer()
        blocks[dump_id] = start
        if kind == BLOCK_DATA:
            reader.skip_chunks()
        elif kind == BLOCK_BLOBS:
            while reader.integer():  # each large object: its oid, then its chunks
                reader.skip_chunks()
        else:
            raise ArchiveFormatError(f"unexpected block type {kind} at byte {start}")
    if reader.position != size:
        raise ArchiveFormatError("the last data block runs past the end of the archive")
    return blocks


def _search_blocks(reader: _Reader, entries: list[DataEntry]) -> dict[int, int]:
    """Find each block by searching for the end of the previous one followed by its own
    header: a zero length (sign byte and ``int_size`` zero bytes), the block type, the dump
    id. COPY data in text form holds no NUL byte and a chunk length is never zero before a
    block ends, so the search cannot stop inside table data. Large objects are binary: an
    archive with a large-object block before the last is refused (walk it instead)."""
    if any(entry.kind == BLOCK_BLOBS for entry in entries[:-1]):
        raise ArchiveFormatError("large objects before the last block: search is not safe")
    data, position = reader.data, reader.position
    end_of_block = reader.encode(0)
    blocks: dict[int, int] = {}
    for index, entry in enumerate(entries):
        header = bytes([entry.kind]) + reader.encode(entry.dump_id)
        if index == 0 and data[position : position + len(header)] != header:
            raise ArchiveFormatError("the first data block does not follow the TOC")
        if index > 0:
            pattern = end_of_block + header
            found = -1
            while found < 0 and position < len(data):
                window_end = min(len(data), position + RELEASE_BYTES)
                found = data.find(pattern, position, window_end)
                if found < 0:
                    position = max(position + 1, window_end - len(pattern) + 1)
                    reader.release(position)
            if found < 0:
                raise ArchiveFormatError(f"no data block for TOC entry {entry.dump_id}")
            position = found + len(end_of_block)
        blocks[entry.dump_id] = position
        position += len(header)
    return blocks


def add_offsets(path: Path, *, method: str = "walk") -> IndexResult:
    """Patch data offsets into the TOC of the archive at ``path`` (in place), finding the
    blocks by walking every chunk (``walk``) or by searching (``search``). Nothing is
    written unless every TOC entry with data has its block."""
    started = time.monotonic()
    with open(path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as data:
        reader = _Reader(data)
        _, offset_size = _read_header(reader)
        entries = _read_toc(reader, offset_size)
        blocks = _search_blocks(reader, entries) if method == "search" else _find_blocks(reader)
        missing = [entry.dump_id for entry in entries if entry.dump_id not in blocks]
        if missing:
            raise ArchiveFormatError(f"no data block for TOC entries {missing[:5]}")
        for entry in entries:
            field = entry.offset_field
            offset = blocks[entry.dump_id].to_bytes(offset_size, "little")
            data[field : field + 1 + offset_size] = bytes([OFFSET_SET]) + offset
        data.flush()
    return IndexResult(blocks, time.monotonic() - started)


def file_behind(stream: IO[bytes]) -> Path | None:
    """The regular file ``stream`` reads, from its start, when it is one (a verified staging
    file drkit handed over); None for a pipe or a stream decrypting as it is read."""
    name = getattr(stream, "name", None)
    if not isinstance(name, str) or not stream.seekable() or stream.tell() != 0:
        return None
    path = Path(name)
    return path if path.is_file() else None


def index_archive(path: Path) -> IndexResult | None:
    """Add data offsets to the archive at ``path``: by search where that is safe, else by
    walking every chunk. None, and the archive unchanged, when it cannot be understood."""
    for method in ("search", "walk"):
        try:
            return add_offsets(path, method=method)
        except (ArchiveFormatError, IndexError, struct.error) as error:
            log.debug("data offsets by %s not added to %s: %s", method, path.name, error)
    return None


@contextmanager
def seekable_archive(stream: IO[bytes]) -> Iterator[Path]:
    """A file holding the archive ``stream`` reads, with its data offsets: the staging file
    behind the stream itself (drkit's own, private; it is modified in place), or a private
    temporary copy of a pipe. The copy is removed on leaving."""
    behind = file_behind(stream)
    if behind is not None:
        index_archive(behind)
        yield behind
        return
    with tempfile.TemporaryDirectory(prefix="drkit-") as directory:  # mkdtemp: mode 0700
        archive = Path(directory) / "restore.pgdump"
        with archive.open("wb") as staged:
            shutil.copyfileobj(stream, staged, COPY_SIZE)
        index_archive(archive)
        yield archive
