"""Streaming zstd compression: round trips, bounded output, and damage detected."""

from __future__ import annotations

import random

import pytest
import zstandard

from drkit.errors import IntegrityError
from drkit.repository.compression import (
    compress_chunks,
    compressor_for,
    decompress_chunks,
    decompressor_for,
)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def compress(data: bytes, level: int = 3) -> bytes:
    return b"".join(compress_chunks(split(data, 7777), level))


SAMPLES = {
    "empty": b"",
    "one byte": b"x",
    "random": random.Random(1).randbytes(300_000),
    "text": b"INSERT INTO orders VALUES (1, 'a@example.com');\n" * 20_000,
}


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("piece", [1, 13, 65536])
def test_round_trip_with_any_input_chunking(name: str, piece: int) -> None:
    data = SAMPLES[name]
    compressed = compress(data)
    pieces = split(compressed, piece) if piece > 1 or len(compressed) < 5000 else [compressed]
    assert b"".join(decompress_chunks(pieces)) == data


def test_output_is_a_standard_zstd_frame() -> None:
    data = SAMPLES["text"]
    assert (
        zstandard.ZstdDecompressor().decompress(compress(data), max_output_size=len(data)) == data
    )


def test_highly_compressible_input_decompresses_in_bounded_pieces() -> None:
    zeros = bytes(64 << 20)
    compressed = compress(zeros)
    assert len(compressed) < 64 << 10
    largest = total = 0
    for piece in decompress_chunks([compressed]):  # one input chunk holding the whole frame
        largest, total = max(largest, len(piece)), total + len(piece)
    assert total == len(zeros)
    assert largest <= 256 << 10


def test_compressed_output_comes_in_one_mib_pieces() -> None:
    pieces = list(compress_chunks([random.Random(2).randbytes(3 << 20)], 1))
    assert [len(piece) for piece in pieces[:-1]] == [1 << 20] * (len(pieces) - 1)


@pytest.mark.parametrize("cut", [1, 4, 100, 5000, 200_000])
def test_truncated_frame_is_detected(cut: int) -> None:
    compressed = compress(SAMPLES["random"])
    with pytest.raises(IntegrityError, match=r"truncated|corrupt"):
        b"".join(decompress_chunks(split(compressed[:-cut], 1000)))


def test_data_after_the_frame_is_detected() -> None:
    compressed = compress(SAMPLES["random"])
    with pytest.raises(IntegrityError, match="data after the end"):
        b"".join(decompress_chunks([compressed, b"junk"]))
    with pytest.raises(IntegrityError, match="data after the end"):
        b"".join(decompress_chunks([compressed + compressed]))


def test_corrupt_content_is_detected() -> None:
    compressed = compress(SAMPLES["text"])
    for position in range(20, len(compressed), max(1, len(compressed) // 40)):
        damaged = bytearray(compressed)
        damaged[position] ^= 0x10
        with pytest.raises(IntegrityError):
            b"".join(decompress_chunks([bytes(damaged)]))


def test_empty_stream_and_non_zstd_input_are_refused() -> None:
    with pytest.raises(IntegrityError, match="empty"):
        b"".join(decompress_chunks([]))
    with pytest.raises(IntegrityError, match="not a zstd frame"):
        b"".join(decompress_chunks([b"PGDMP\x01\x0e\x00 not compressed"]))


def test_algorithm_none_passes_the_stream_through() -> None:
    chunks = [b"a", b"", b"bc"]
    assert list(compressor_for("none", 3)(chunks)) == [b"a", b"bc"]
    assert list(decompressor_for("none")(chunks)) == [b"a", b"bc"]


def test_filters_for_zstd_compose_to_identity() -> None:
    data = SAMPLES["text"]
    restored = decompressor_for("zstd")(compressor_for("zstd", 9)(split(data, 1000)))
    assert b"".join(restored) == data
