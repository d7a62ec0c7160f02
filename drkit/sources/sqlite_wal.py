"""SQLite's write-ahead log read as bytes, and drkit's capture segments built from it (pure).

A database in WAL mode appends every committed transaction to ``<db>-wal`` as frames: a
24-byte header (page number; for the last frame of a transaction, the database size in pages
after it commits; the WAL's two salts; a running checksum) and the page's new image. A frame
is valid when its salts are the WAL header's and its checksum continues the previous one's,
so reading stops at a torn or stale frame by itself. When every frame has been copied into
the database, the next writer starts the log over from its first frame with new salts (a new
*incarnation* of the file; the checkpoint sequence number in its header grows by one).

drkit's capture (``drkit.archive.sqlite_capture``) copies the committed frames into segment
files of records, each stamped with the moment drkit read them::

    record  = ">4sBQQI": b"DKSQ", kind, capture time (µs since the epoch), WAL offset, length
    START   (kind 3): a generation begins; its base copy was taken before this read
    HEADER  (kind 1): payload = the 32-byte WAL header and the running checksum (2 x u32) that
                      the next frames continue, at ``offset`` (32 for a new incarnation)
    FRAMES  (kind 2): payload = whole frames from ``offset`` on, ending with a commit frame

Replaying a segment chain over the generation's base copy writes each frame's page in place
and cuts the file to the committed size, as SQLite's own checkpoint does; the chain is checked
as it is replayed (every FRAMES record continues the HEADER or FRAMES before it, by offset and
by checksum), so a missing or reordered segment cannot go unnoticed.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from drkit.errors import IntegrityError

WAL_HEADER_SIZE = 32
FRAME_HEADER_SIZE = 24
MAGIC_LITTLE = 0x377F0682  # checksums over little-endian words
MAGIC_BIG = 0x377F0683  # checksums over big-endian words
MASK = 0xFFFFFFFF

RECORD = struct.Struct(">4sBQQI")
RECORD_MAGIC = b"DKSQ"
START, HEADER, FRAMES = 3, 1, 2
Checksum = tuple[int, int]


def checksum(data: bytes, big_endian: bool, previous: Checksum = (0, 0)) -> Checksum:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes), continuing ``previous``."""
    words = array("I", data)
    if big_endian != (struct.pack("=I", 1) == struct.pack(">I", 1)):
        words.byteswap()
    s0, s1 = previous
    iterator = iter(words)
    for first, second in zip(iterator, iterator, strict=True):
        s0 = (s0 + first + s1) & MASK
        s1 = (s1 + second + s0) & MASK
    return s0, s1


@dataclass(frozen=True)
class WalHeader:
    raw: bytes
    page_size: int
    checkpoint: int
    salts: tuple[int, int]
    checksum: Checksum

    @property
    def big_endian(self) -> bool:
        magic: int = struct.unpack(">I", self.raw[:4])[0]
        return magic == MAGIC_BIG

    @property
    def frame_size(self) -> int:
        return FRAME_HEADER_SIZE + self.page_size


def parse_header(raw: bytes) -> WalHeader | None:
    """The WAL header, or None when ``raw`` is not a whole valid one (no WAL yet, or a
    header being rewritten at this moment)."""
    if len(raw) < WAL_HEADER_SIZE:
        return None
    magic, version, page_size, checkpoint, salt1, salt2, sum1, sum2 = struct.unpack(
        ">8I", raw[:WAL_HEADER_SIZE]
    )
    if magic not in (MAGIC_LITTLE, MAGIC_BIG) or version != 3007000:
        return None
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return None
    if checksum(raw[:24], magic == MAGIC_BIG) != (sum1, sum2):
        return None
    return WalHeader(
        bytes(raw[:WAL_HEADER_SIZE]), page_size, checkpoint, (salt1, salt2), (sum1, sum2)
    )


@dataclass(frozen=True)
class Committed:
    """The committed frames read from one offset: their bytes, where they end, the checksum
    the next frame continues, and how many transactions they hold."""

    data: bytes
    end: int
    checksum: Checksum
    commits: int


def committed_frames(header: WalHeader, wal: bytes, offset: int, previous: Checksum) -> Committed:
    """The valid frames of ``wal`` (the whole file's bytes) from ``offset`` up to the last
    commit frame among them; nothing from a transaction not yet committed."""
    size = header.frame_size
    position, running = offset, previous
    end, end_checksum, commits = offset, previous, 0
    while position + size <= len(wal):
        frame = wal[position : position + size]
        page, committed_size, salt1, salt2, sum1, sum2 = struct.unpack(">6I", frame[:24])
        if (salt1, salt2) != header.salts or page == 0:
            break
        running = checksum(frame[:8] + frame[FRAME_HEADER_SIZE:], header.big_endian, running)
        if running != (sum1, sum2):
            break
        position += size
        if committed_size:
            end, end_checksum, commits = position, running, commits + 1
    return Committed(bytes(wal[offset:end]), end, end_checksum, commits)


# --- segment records ----------------------------------------------------------------------


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def microseconds(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_microseconds(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def encode_record(kind: int, moment: datetime, offset: int, payload: bytes = b"") -> bytes:
    return RECORD.pack(RECORD_MAGIC, kind, microseconds(moment), offset, len(payload)) + payload


def header_payload(header: WalHeader, running: Checksum) -> bytes:
    return header.raw + struct.pack(">2I", *running)


@dataclass(frozen=True)
class Record:
    kind: int
    time: datetime
    offset: int
    payload: bytes
    end: int  # where the record ends in its segment file

    @property
    def header(self) -> WalHeader:
        found = parse_header(self.payload[:WAL_HEADER_SIZE])
        if found is None:
            raise IntegrityError("a capture segment holds a damaged WAL header")
        return found

    @property
    def running(self) -> Checksum:
        first, second = struct.unpack(">2I", self.payload[WAL_HEADER_SIZE : WAL_HEADER_SIZE + 8])
        return first, second


def read_records(data: bytes) -> Iterator[Record]:
    """The whole records of a segment file, in order; a torn last record (a capture killed
    while appending) ends the iteration."""
    position = 0
    while position + RECORD.size <= len(data):
        magic, kind, stamp, offset, length = RECORD.unpack_from(data, position)
        start = position + RECORD.size
        if magic != RECORD_MAGIC or kind not in (START, HEADER, FRAMES):
            raise IntegrityError(f"a capture segment is damaged at byte {position}")
        if start + length > len(data):
            return
        yield Record(
            kind, from_microseconds(stamp), offset, data[start : start + length], start + length
        )
        position = start + length


# --- replay -------------------------------------------------------------------------------


@dataclass
class Replay:
    """Replays segment records over a generation's base copy, checking the chain."""

    database: BinaryIO
    header: WalHeader | None = None
    offset: int = 0
    running: Checksum = (0, 0)
    started: bool = False
    #: the capture time of the newest record applied: what the database now holds
    landed_at: datetime | None = None
    transactions: int = 0

    def apply(self, record: Record) -> None:
        if record.kind == START:
            if self.started:
                raise IntegrityError("a capture segment starts its generation twice")
            self.started = True
        elif not self.started:
            raise IntegrityError("the first capture segment of the generation is missing")
        elif record.kind == HEADER:
            header = record.header
            if self.header is not None and header.salts != self.header.salts:
                # a new incarnation: the log started over after a complete checkpoint
                if (
                    record.offset != WAL_HEADER_SIZE
                    or header.checkpoint != self.header.checkpoint + 1
                ):
                    raise IntegrityError(
                        "the captured WAL skips an incarnation: a segment is missing"
                    )
            elif self.header is not None and record.offset != self.offset:
                raise IntegrityError("the captured WAL does not continue where it ended")
            self.header, self.offset, self.running = header, record.offset, record.running
        else:
            self._frames(record)
        self.landed_at = record.time

    def _frames(self, record: Record) -> None:
        header = self.header
        if header is None or record.offset != self.offset:
            raise IntegrityError(
                "captured WAL frames do not continue the chain: a segment is missing"
            )
        found = committed_frames(header, record.payload, 0, self.running)
        if len(found.data) != len(record.payload):
            raise IntegrityError("captured WAL frames fail their checksums")
        size = header.frame_size
        for position in range(0, len(record.payload), size):
            page, committed_size = struct.unpack(">2I", record.payload[position : position + 8])
            self.database.seek((page - 1) * header.page_size)
            self.database.write(record.payload[position + FRAME_HEADER_SIZE : position + size])
            if committed_size:
                self.database.truncate(committed_size * header.page_size)
                self.transactions += 1
        self.offset += len(record.payload)
        self.running = found.checksum


def replay_into(database: Path, segments: Iterator[bytes], moment: datetime | None) -> Replay:
    """Apply every record captured at or before ``moment`` (all with None) to ``database``."""
    with database.open("r+b") as file:
        replay = Replay(file)
        for segment in segments:
            for record in read_records(segment):
                if moment is not None and record.time > moment:
                    return replay
                replay.apply(record)
        file.flush()
    return replay
