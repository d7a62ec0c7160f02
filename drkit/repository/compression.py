"""Streaming compression before encryption: zstd (one frame with a content checksum) or none.

Both directions stream in bounded memory. Decompression follows the frame's block structure so
it feeds zstd at most one block (<= 128 KiB of output) at a time, whatever the compression ratio,
and so it knows where the frame ends: a truncated frame, a damaged one, or bytes after its end
raise ``IntegrityError`` rather than yielding a silently short stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import zstandard

from drkit.errors import IntegrityError

Algorithm = Literal["zstd", "none"]
ChunkFilter = Callable[[Iterable[bytes]], Iterator[bytes]]

#: compressed output comes in pieces of this size, so encryption re-chunks without copying
OUTPUT_CHUNK_SIZE = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_BLOCK_SIZE = 128 * 1024
FRAME_CONTENT_SIZE_BYTES = (0, 2, 4, 8)
DICTIONARY_ID_BYTES = (0, 1, 2, 4)


def compress_chunks(
    chunks: Iterable[bytes], level: int, *, chunk_size: int = OUTPUT_CHUNK_SIZE
) -> Iterator[bytes]:
    """Compress ``chunks`` into one zstd frame (with content checksum), yielded in pieces of
    ``chunk_size`` bytes (the last may be shorter)."""
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
    chunker = compressor.chunker(chunk_size=chunk_size)
    for chunk in chunks:
        if chunk:
            yield from chunker.compress(chunk)
    yield from chunker.finish()  # type: ignore[no-untyped-call]


def decompress_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress one zstd frame; raise IntegrityError when it is corrupt, truncated, or
    followed by more data."""
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    scanner = FrameScanner()
    for chunk in chunks:
        for piece in scanner.split(chunk):
            try:
                output = decompressor.decompress(piece)
            except zstandard.ZstdError as error:
                raise IntegrityError(f"compressed stream is corrupt: {error}") from None
            if output:
                yield output
    if not scanner.started:
        raise IntegrityError("compressed stream is empty: no zstd frame")
    if not (scanner.complete and decompressor.eof):
        raise IntegrityError("compressed stream is truncated: the zstd frame does not end")


def passthrough(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Algorithm ``none``: the stream unchanged (empty chunks dropped)."""
    return (chunk for chunk in chunks if chunk)


def compressor_for(algorithm: Algorithm, level: int) -> ChunkFilter:
    """The compressing stream filter for a plan's ``compression`` section."""
    if algorithm == "zstd":
        return lambda chunks: compress_chunks(chunks, level)
    if algorithm == "none":
        return passthrough
    raise ValueError(f"unknown compression algorithm {algorithm!r}")


def decompressor_for(algorithm: Algorithm) -> ChunkFilter:
    """The decompressing stream filter for an artifact's recorded ``compression``."""
    if algorithm == "zstd":
        return decompress_chunks
    if algorithm == "none":
        return passthrough
    raise ValueError(f"unknown compression algorithm {algorithm!r}")


class FrameScanner:
    """Follows the layout of one zstd frame (RFC 8878: header, blocks, optional checksum)
    without decoding it.

    ``split`` cuts the input at block ends, so each piece fed to the decoder yields at most about
    one block of output; ``complete`` says whether the frame's last byte has been seen.
    """

    def __init__(self) -> None:
        self.started = False
        self.complete = False
        self._state = "frame-header"
        self._field = bytearray()
        self._need = 5  # magic (4) + frame header descriptor (1)
        self._skip = 0  # bytes of block content or checksum still to pass
        self._last_block = False
        self._has_checksum = False

    def split(self, chunk: bytes) -> Iterator[memoryview]:
        """Pieces of ``chunk`` in order, each ending at the latest at a block's end."""
        view = memoryview(chunk).cast("B")
        start = position = 0
        self.started = self.started or len(view) > 0
        while position < len(view):
            if self.complete:
                raise IntegrityError("compressed stream has data after the end of its zstd frame")
            if self._skip:
                step = min(self._skip, len(view) - position)
                position += step
                self._skip -= step
                if self._skip == 0 and self._finish_skip():
                    yield view[start:position]
                    start = position
                continue
            take = min(self._need - len(self._field), len(view) - position)
            self._field += view[position : position + take]
            position += take
            if len(self._field) == self._need:
                self._parse_field(bytes(self._field))
                self._field.clear()
                if self._state == "block-content" and self._skip == 0 and self._finish_skip():
                    yield view[start:position]
                    start = position
        if start < position:
            yield view[start:position]

    def _parse_field(self, field: bytes) -> None:
        if self._state == "frame-header":
            if field[:4] != ZSTD_MAGIC:
                raise IntegrityError("compressed stream is not a zstd frame (bad magic number)")
            descriptor = field[4]
            single_segment = bool(descriptor & 0x20)
            self._has_checksum = bool(descriptor & 0x04)
            content_size_bytes = FRAME_CONTENT_SIZE_BYTES[descriptor >> 6] or int(single_segment)
            self._need = (
                (0 if single_segment else 1)
                + DICTIONARY_ID_BYTES[descriptor & 0x03]
                + content_size_bytes
            )
            self._state = "frame-header-rest"
            if self._need == 0:
                self._expect_block_header()
        elif self._state == "frame-header-rest":
            self._expect_block_header()
        else:
            self._parse_block_header(int.from_bytes(field, "little"))

    def _expect_block_header(self) -> None:
        self._state, self._need = "block-header", 3

    def _parse_block_header(self, header: int) -> None:
        self._last_block = bool(header & 1)
        block_type, size = (header >> 1) & 0x03, header >> 3
        if block_type == 3 or size > MAX_BLOCK_SIZE:
            raise IntegrityError("compressed stream is corrupt: invalid zstd block header")
        self._state = "block-content"
        self._skip = 1 if block_type == 1 else size  # an RLE block stores one byte

    def _finish_skip(self) -> bool:
        """Move past finished block content or checksum; True at a block's end."""
        if self._state == "checksum":
            self.complete = True
            return True
        if not self._last_block:
            self._expect_block_header()
        elif self._has_checksum:
            self._state, self._skip = "checksum", 4
        else:
            self.complete = True
        return True
