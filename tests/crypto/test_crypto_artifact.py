"""The artifact format: round trips at the chunk-size edges, and every kind of damage detected."""

from __future__ import annotations

import base64
import json
import random
import struct

import pytest

from drkit.crypto import KeyfileKek, decrypt_chunks, encrypt_chunks, read_header
from drkit.crypto.artifact import TAG_SIZE, fixed_pieces
from drkit.errors import IntegrityError, KeyUnavailableError

CONTEXT = "drkit:orders:20261127T153000.000Z-3fa2c1:orders-db"
SMALL = 64  # chunk size for tests that look at individual chunks


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def odd_pieces(data: bytes, seed: int = 7, largest: int = 300_000) -> list[bytes]:
    """``data`` cut at random points, including empty pieces."""
    rng, pieces, position = random.Random(seed), [], 0
    while position < len(data):
        step = rng.choice([0, 1, 17, rng.randrange(1, largest)])
        pieces.append(data[position : position + step])
        position += step
    return pieces


def seal(plaintext: bytes, key: KeyfileKek, chunk_size: int = SMALL) -> list[bytes]:
    """[header, sealed chunk 0, ...] as encrypt_chunks yields them."""
    return list(encrypt_chunks(split(plaintext, 5), [key], CONTEXT, chunk_size=chunk_size))


def open_all(parts: list[bytes], key: KeyfileKek, context: str = CONTEXT) -> bytes:
    return b"".join(decrypt_chunks(parts, [key], context))


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL, 3 * SMALL + 7])
@pytest.mark.parametrize("piece", [1, 7, SMALL, 1000])
def test_round_trip_at_chunk_size_edges(keyfile_key: KeyfileKek, size: int, piece: int) -> None:
    plaintext = random.Random(size).randbytes(size)
    sealed = list(encrypt_chunks(split(plaintext, piece), [keyfile_key], CONTEXT, chunk_size=SMALL))
    artifact = b"".join(sealed)
    assert b"".join(decrypt_chunks(split(artifact, piece), [keyfile_key], CONTEXT)) == plaintext
    chunks = max(1, -(-size // SMALL))  # the final chunk is empty only for empty input
    assert len(sealed) == 1 + chunks
    assert len(artifact) == len(sealed[0]) + size + chunks * TAG_SIZE


def test_round_trip_of_several_mib_with_odd_input_chunking(keyfile_key: KeyfileKek) -> None:
    plaintext = random.Random(1).randbytes(5 * (1 << 20) + 12345)
    artifact = b"".join(encrypt_chunks(odd_pieces(plaintext), [keyfile_key], CONTEXT))
    assert read_header(artifact).chunk_size == 1 << 20
    decrypted = list(decrypt_chunks(odd_pieces(artifact, seed=8), [keyfile_key], CONTEXT))
    assert b"".join(decrypted) == plaintext
    assert max(len(chunk) for chunk in decrypted) == 1 << 20  # chunk by chunk, not all at once


def test_fixed_pieces_cuts_exact_sizes_and_flags_only_the_last() -> None:
    data = bytes(range(256)) * 10
    for pieces in (split(data, 1), split(data, 100), [data], odd_pieces(data, largest=700)):
        result = [(bytes(piece), last) for piece, last in fixed_pieces(pieces, 256)]
        assert b"".join(piece for piece, _ in result) == data
        assert [last for _, last in result] == [False] * 9 + [True]
        assert all(len(piece) == 256 for piece, _ in result)
    assert [(bytes(p), last) for p, last in fixed_pieces([], 8)] == [(b"", True)]


def test_header_records_version_chunk_size_context_and_keys(keyfile_key: KeyfileKek) -> None:
    header_bytes = seal(b"data", keyfile_key)[0]
    header = read_header(header_bytes + b"body bytes are ignored")
    assert (header.version, header.chunk_size, header.context) == (1, SMALL, CONTEXT)
    assert header.key_names == ["primary"]
    assert header.size == len(header_bytes)
    assert header_bytes[:8] == b"DRKITAF1"
    body = header_bytes[12:]
    assert struct.unpack(">I", header_bytes[8:12]) == (len(body),)
    assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()


def test_read_header_refuses_an_incomplete_prefix(keyfile_key: KeyfileKek) -> None:
    header_bytes = seal(b"data", keyfile_key)[0]
    with pytest.raises(IntegrityError, match="truncated"):
        read_header(header_bytes[:-1])


def test_no_plaintext_marker_appears_in_the_ciphertext(keyfile_key: KeyfileKek) -> None:
    marker = b"PLAINTEXT-MARKER-4f1c"
    plaintext = (b"row " + marker + b"\n") * 50_000
    artifact = b"".join(encrypt_chunks([plaintext], [keyfile_key], CONTEXT))
    assert marker not in artifact
    assert marker[:8] not in artifact


def test_each_artifact_gets_its_own_data_key_and_nonces(keyfile_key: KeyfileKek) -> None:
    first, second = seal(b"same" * 40, keyfile_key), seal(b"same" * 40, keyfile_key)
    assert first[1] != second[1]
    assert read_header(first[0]).nonce_prefix != read_header(second[0]).nonce_prefix


# --- tampering --------------------------------------------------------------------------------


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    damaged = bytearray(data)
    damaged[index] ^= 1 << bit
    return bytes(damaged)


@pytest.fixture
def parts(keyfile_key: KeyfileKek) -> list[bytes]:
    """Header and five sealed chunks: four full, one final of 10 bytes."""
    plaintext = random.Random(3).randbytes(4 * SMALL + 10)
    sealed = seal(plaintext, keyfile_key)
    assert len(sealed) == 6
    return sealed


def test_flipped_bit_in_header_nonce_prefix_is_detected(
    parts: list[bytes], keyfile_key: KeyfileKek
) -> None:
    header = read_header(parts[0])
    encoded = base64.b64encode(header.nonce_prefix)
    damaged_prefix = base64.b64encode(flip(header.nonce_prefix, 3))
    damaged = parts[0].replace(encoded, damaged_prefix)
    assert damaged != parts[0]
    with pytest.raises(IntegrityError, match="chunk 0 failed authentication"):
        open_all([damaged, *parts[1:]], keyfile_key)


def test_any_flipped_header_byte_yields_no_plaintext(
    parts: list[bytes], keyfile_key: KeyfileKek
) -> None:
    for index in range(len(parts[0])):
        damaged = flip(parts[0], index, bit=index % 8)
        produced: list[bytes] = []
        with pytest.raises((IntegrityError, KeyUnavailableError)):
            produced.extend(decrypt_chunks([damaged, *parts[1:]], [keyfile_key], CONTEXT))
        assert produced == [], f"header byte {index}"


def test_flipped_bit_in_a_chunk_is_detected(parts: list[bytes], keyfile_key: KeyfileKek) -> None:
    damaged = [*parts[:3], flip(parts[3], 5), *parts[4:]]
    with pytest.raises(IntegrityError, match="chunk 2 failed authentication"):
        open_all(damaged, keyfile_key)


def test_flipped_bit_in_a_tag_is_detected(parts: list[bytes], keyfile_key: KeyfileKek) -> None:
    damaged = [*parts[:-1], flip(parts[-1], len(parts[-1]) - 1, bit=7)]
    with pytest.raises(IntegrityError, match="chunk 4 failed authentication"):
        open_all(damaged, keyfile_key)


def test_truncation_at_a_chunk_boundary_is_detected(
    parts: list[bytes], keyfile_key: KeyfileKek
) -> None:
    with pytest.raises(IntegrityError, match="truncated: final chunk missing"):
        open_all(parts[:-1], keyfile_key)
    with pytest.raises(IntegrityError, match="truncated: final chunk missing"):
        open_all(parts[:1], keyfile_key)


def test_truncation_mid_chunk_and_mid_header_is_detected(
    parts: list[bytes], keyfile_key: KeyfileKek
) -> None:
    artifact = b"".join(parts)
    for cut in (len(artifact) - 1, len(artifact) - TAG_SIZE - 3, len(parts[0]) + 30, 20, 5):
        with pytest.raises(IntegrityError):
            open_all([artifact[:cut]], keyfile_key)


def test_dropped_chunk_is_detected(parts: list[bytes], keyfile_key: KeyfileKek) -> None:
    with pytest.raises(IntegrityError, match="chunk 2 failed authentication"):
        open_all([*parts[:3], *parts[4:]], keyfile_key)


def test_swapped_chunks_are_detected(parts: list[bytes], keyfile_key: KeyfileKek) -> None:
    with pytest.raises(IntegrityError, match="chunk 1 failed authentication"):
        open_all([parts[0], parts[1], parts[3], parts[2], *parts[4:]], keyfile_key)


def test_data_appended_after_the_final_chunk_is_detected(keyfile_key: KeyfileKek) -> None:
    sealed = seal(bytes(3 * SMALL), keyfile_key)  # the final chunk is a full one
    with pytest.raises(IntegrityError, match="data after the final chunk"):
        open_all([*sealed, sealed[-1]], keyfile_key)
    short_final = seal(bytes(SMALL + 3), keyfile_key)
    with pytest.raises(IntegrityError, match="chunk 1 failed authentication"):
        open_all([*short_final, b"x"], keyfile_key)


def test_artifact_from_another_context_is_refused(
    parts: list[bytes], keyfile_key: KeyfileKek
) -> None:
    other = "drkit:orders:20261128T000000Z-aaaaaa:orders-db"
    with pytest.raises(IntegrityError, match=f"artifact belongs to {CONTEXT}, expected {other}"):
        open_all(parts, keyfile_key, context=other)


def test_header_rewritten_to_claim_another_context_is_refused(
    parts: list[bytes], keyfile_key: KeyfileKek
) -> None:
    other = "drkit:orders:20261128T000000Z-aaaaaa:orders-db"
    body = parts[0][12:].replace(CONTEXT.encode(), other.encode())
    forged = b"DRKITAF1" + struct.pack(">I", len(body)) + body
    with pytest.raises(IntegrityError, match="wrapped data key failed authentication"):
        open_all([forged, *parts[1:]], keyfile_key, context=other)


def test_chunk_spliced_from_another_artifact_of_the_same_context_is_detected(
    parts: list[bytes], keyfile_key: KeyfileKek
) -> None:
    other = seal(random.Random(4).randbytes(4 * SMALL + 10), keyfile_key)
    with pytest.raises(IntegrityError, match="chunk 1 failed authentication"):
        open_all([*parts[:2], other[2], *parts[3:]], keyfile_key)


def test_not_an_artifact_is_refused(keyfile_key: KeyfileKek) -> None:
    with pytest.raises(IntegrityError, match="not a drkit artifact"):
        open_all([b"PGDMP\x01\x0e\x00" + bytes(100)], keyfile_key)
    with pytest.raises(IntegrityError, match="truncated"):
        open_all([], keyfile_key)
