"""An experiment: give a pg_dump custom archive that was written through a pipe the data
offsets that pg_dump writes only when its output is seekable.

pg_dump writes the table of contents (TOC) before the data. On a seekable file it goes back at
the end and rewrites the TOC with each data block's offset; through a pipe it cannot, so every
entry says "offset not set", and each ``pg_restore -j`` worker has to scan the archive for the
blocks it restores. The TOC entries have a fixed-size offset field either way, so the offsets
can be patched in place: parse the header and TOC, walk the data blocks (each is a type byte,
a dump id, then length-prefixed chunks up to a zero length), and write "offset set" plus the
block's position into each entry. The result is byte for byte what pg_dump would have written
to a file. Archive versions 1.12 to 1.15 (pg_dump 9.6 to 16) are understood.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

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
        while True:
            _, length = unpack(data, position)
            position += 5
            if not length:
                break
            position += length
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
            found = data.find(end_of_block + header, position)
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
