"""The drkit artifact format: a header naming who can open the data key, then the plaintext
sealed in fixed-size chunks with AES-256-GCM (the STREAM construction of age and Tink).

Layout (spec and a standalone reference decryptor: docs/artifact-format.md)::

    b"DRKITAF1" | u32 BE header length | header JSON | sealed chunk 0 | ... | sealed final chunk

Chunk ``i`` is sealed under the artifact's random data key with nonce
``nonce_prefix(7) || i (u32 BE) || last (1 byte)`` and associated data ``sha256(all header
bytes)``, so any change to the header, any flipped bit, reordered, dropped or appended chunk, a
truncation, or an artifact spliced in from another snapshot fails authentication.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from drkit.crypto.keys import KEY_SIZE, KeyEncryptionKey
from drkit.errors import DrkitError, IntegrityError, KeyUnavailableError

MAGIC = b"DRKITAF1"
VERSION = 1
CIPHER = "AES-256-GCM-STREAM"
PREFIX_SIZE = len(MAGIC) + 4  # magic + u32 header length
MAX_HEADER_SIZE = 1 << 20
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 1 << 26
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
MAX_CHUNKS = 1 << 32
NONCE_SUFFIX = struct.Struct(">IB")

Chunk = bytes | bytearray | memoryview


@dataclass(frozen=True)
class ArtifactHeader:
    """What an artifact's header says, for decryption, reports and ``drkit verify``."""

    version: int
    cipher: str
    chunk_size: int
    nonce_prefix: bytes
    context: str
    recipients: tuple[dict[str, str], ...]
    #: bytes the header takes at the start of the artifact (magic and length included)
    size: int
    #: sha256 of those bytes: the associated data of every chunk
    digest: bytes

    @property
    def key_names(self) -> list[str]:
        """Names of the keys the data key is wrapped for, in header order."""
        return [recipient["name"] for recipient in self.recipients]


def encode_header(
    chunk_size: int, nonce_prefix: bytes, context: str, recipients: list[dict[str, str]]
) -> bytes:
    """Magic, length and header JSON (sorted keys, compact) as written at an artifact's start."""
    document = {
        "version": VERSION,
        "cipher": CIPHER,
        "chunk_size": chunk_size,
        "nonce_prefix": base64.b64encode(nonce_prefix).decode("ascii"),
        "context": context,
        "recipients": recipients,
    }
    body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return MAGIC + struct.pack(">I", len(body)) + body


def header_size(prefix: bytes) -> int:
    """Total header size from an artifact's first 12 bytes; IntegrityError when they are not
    a drkit artifact's."""
    if len(prefix) < PREFIX_SIZE:
        raise IntegrityError(f"truncated: artifact has {len(prefix)} bytes, no complete header")
    if prefix[: len(MAGIC)] != MAGIC:
        raise IntegrityError("not a drkit artifact (bad magic bytes)")
    (length,) = struct.unpack(">I", prefix[len(MAGIC) : PREFIX_SIZE])
    if length > MAX_HEADER_SIZE:
        raise IntegrityError(f"artifact header claims {length} bytes, more than any drkit header")
    return PREFIX_SIZE + int(length)


def read_header(prefix: bytes) -> ArtifactHeader:
    """Parse the header at the start of ``prefix`` (the artifact's first bytes, at least the
    whole header). Raises IntegrityError when it is incomplete, malformed or unsupported."""
    size = header_size(prefix)
    if len(prefix) < size:
        raise IntegrityError(f"truncated: artifact header needs {size} bytes, got {len(prefix)}")
    raw = bytes(prefix[:size])
    try:
        document = json.loads(raw[PREFIX_SIZE:].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntegrityError("artifact header is damaged: not JSON") from None
    if not isinstance(document, dict):
        raise IntegrityError("artifact header is damaged: not a JSON object")
    return parse_header(document, size, hashlib.sha256(raw).digest())


def parse_header(document: dict[str, Any], size: int, digest: bytes) -> ArtifactHeader:
    """Check every header field's type and range."""
    version, cipher = document.get("version"), document.get("cipher")
    if version != VERSION or cipher != CIPHER:
        raise IntegrityError(
            f"artifact format version {version!r} / cipher {cipher!r} is not {VERSION} / {CIPHER}",
            hint="a newer drkit may read it; otherwise the header is damaged",
        )
    chunk_size, context = document.get("chunk_size"), document.get("context")
    recipients = document.get("recipients")
    if not (isinstance(chunk_size, int) and 1 <= chunk_size <= MAX_CHUNK_SIZE):
        raise IntegrityError(f"artifact header is damaged: chunk_size {chunk_size!r}")
    if not isinstance(context, str):
        raise IntegrityError("artifact header is damaged: context is not a string")
    if not (isinstance(recipients, list) and all(is_recipient(entry) for entry in recipients)):
        raise IntegrityError("artifact header is damaged: recipients are not name/type entries")
    try:
        nonce_prefix = base64.b64decode(str(document.get("nonce_prefix")), validate=True)
    except binascii.Error:
        nonce_prefix = b""
    if len(nonce_prefix) != NONCE_PREFIX_SIZE:
        raise IntegrityError("artifact header is damaged: nonce_prefix is not 7 bytes of base64")
    return ArtifactHeader(
        VERSION, CIPHER, chunk_size, nonce_prefix, context, tuple(recipients), size, digest
    )


def is_recipient(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and all(isinstance(key, str) and isinstance(value, str) for key, value in entry.items())
        and "name" in entry
        and "type" in entry
    )


def chunk_nonce(nonce_prefix: bytes, index: int, last: bool) -> bytes:
    return nonce_prefix + NONCE_SUFFIX.pack(index, last)


# --- encrypting ------------------------------------------------------------------------------


def encrypt_chunks(
    chunks: Iterable[bytes],
    keys: Sequence[KeyEncryptionKey],
    context: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """Encrypt a stream into an artifact: yields the header, then one sealed chunk per
    ``chunk_size`` bytes of plaintext (input of any chunking; memory stays bounded).

    The fresh data key is wrapped for every key in ``keys``; any key that cannot wrap it raises
    (KeyUnavailableError), since an artifact missing a configured key breaks the promise that
    any one key decrypts. Wrapping happens when the first chunk is requested.
    """
    if not keys:
        raise KeyUnavailableError("no key to encrypt with", hint="add a key to the plan's keys")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}")
    return _encrypt(chunks, keys, context, chunk_size)


def _encrypt(
    chunks: Iterable[bytes], keys: Sequence[KeyEncryptionKey], context: str, chunk_size: int
) -> Iterator[bytes]:
    data_key = os.urandom(KEY_SIZE)
    recipients = [key.wrap(data_key, context.encode("utf-8")) for key in keys]
    nonce_prefix = os.urandom(NONCE_PREFIX_SIZE)
    header = encode_header(chunk_size, nonce_prefix, context, recipients)
    digest = hashlib.sha256(header).digest()
    yield header
    sealer = AESGCM(data_key)
    for index, (plaintext, last) in enumerate(fixed_pieces(chunks, chunk_size)):
        if index >= MAX_CHUNKS:
            raise DrkitError("artifact too large for its chunk size (more than 2**32 chunks)")
        yield sealer.encrypt(chunk_nonce(nonce_prefix, index, last), plaintext, digest)


def fixed_pieces(chunks: Iterable[Chunk], size: int) -> Iterator[tuple[Chunk, bool]]:
    """Re-cut a stream into pieces of exactly ``size`` bytes, flagging the last one, which
    holds 1..size bytes (0 only for an empty stream).

    Pieces that fall inside one input chunk are memoryviews of it (no copy); only bytes that
    straddle input chunks are copied, into one reused buffer. A full piece is held back until
    more input shows it is not the last. Each piece is valid until the next one is requested.
    """
    partial, filled = bytearray(size), 0  # one buffer, allocated once
    held: Chunk | None = None
    for chunk in chunks:
        if not chunk:
            continue
        if held is not None:
            yield held, False
            held = None
        view = memoryview(chunk if isinstance(chunk, bytes) else bytes(chunk)).cast("B")
        position = 0
        if filled:
            position = min(size - filled, len(view))
            partial[filled : filled + position] = view[:position]
            filled += position
            if filled < size:
                continue
            if position < len(view):
                yield partial, False
            else:
                held = partial
            filled = 0  # reused: the consumer is done with a piece once it asks for the next
        while len(view) - position > size:
            yield view[position : position + size], False
            position += size
        if len(view) - position == size:
            held = view[position:]
        elif position < len(view):
            filled = len(view) - position
            partial[:filled] = view[position:]
    if held is not None:
        yield held, True
    else:
        yield memoryview(partial)[:filled], True


# --- decrypting ------------------------------------------------------------------------------


def decrypt_chunks(
    chunks: Iterable[bytes], keys: Sequence[KeyEncryptionKey], context: str
) -> Iterator[bytes]:
    """Decrypt an artifact, yielding each chunk's plaintext only once it has authenticated.

    Raises IntegrityError for a damaged header, an artifact of another ``context``, a chunk
    failing authentication, truncation or trailing data, and KeyUnavailableError when no key
    in ``keys`` (tried in order, skipping those that cannot load) opens the data key. A
    consumer must not act on yielded plaintext before the stream ends without error.
    """
    stream = iter(chunks)
    header, rest = take_header(stream)
    if header.context != context:
        raise IntegrityError(f"artifact belongs to {header.context}, expected {context}")
    data_key = unwrap_data_key(header, keys)
    yield from open_body(itertools.chain([rest], stream), header, AESGCM(data_key))


def take_header(stream: Iterator[bytes]) -> tuple[ArtifactHeader, bytes]:
    """Read and parse the header from the stream's start; return it and the bytes after it."""
    buffer = bytearray()
    needed: int | None = None
    for chunk in stream:
        buffer += chunk
        if needed is None and len(buffer) >= PREFIX_SIZE:
            needed = header_size(bytes(buffer[:PREFIX_SIZE]))
        if needed is not None and len(buffer) >= needed:
            break
    header = read_header(bytes(buffer))
    return header, bytes(buffer[header.size :])


def unwrap_data_key(header: ArtifactHeader, keys: Sequence[KeyEncryptionKey]) -> bytes:
    """The data key, from the first key in ``keys`` that opens its recipient entry."""
    context = header.context.encode("utf-8")
    reasons: list[str] = []
    damaged = False
    for key in keys:
        recipient = next(
            (
                entry
                for entry in header.recipients
                if (entry["name"], entry["type"]) == (key.name, key.type)
            ),
            None,
        )
        if recipient is None:
            reasons.append(f"key {key.name!r}: the artifact was not written for it")
            continue
        try:
            return key.unwrap(recipient, context)
        except DrkitError as error:
            reasons.append(error.message)
            damaged = damaged or isinstance(error, IntegrityError)
    written_for = ", ".join(header.key_names) or "no key"
    message = f"no configured key opens the artifact (written for {written_for}): " + "; ".join(
        reasons or ["no keys configured"]
    )
    if damaged:  # the right key failed on its own entry: the header, not the key, is at fault
        raise IntegrityError(message)
    raise KeyUnavailableError(message)


def open_body(body: Iterable[bytes], header: ArtifactHeader, opener: AESGCM) -> Iterator[bytes]:
    """Authenticate and decrypt the sealed chunks after the header."""
    sealed_size = header.chunk_size + TAG_SIZE
    for index, (sealed, last) in enumerate(fixed_pieces(body, sealed_size)):
        if index >= MAX_CHUNKS:
            raise IntegrityError("data after the final chunk (more than 2**32 chunks)")
        if last and len(sealed) < TAG_SIZE:
            if len(sealed) == 0:
                raise IntegrityError("truncated: final chunk missing")
            raise IntegrityError(f"truncated: chunk {index} is shorter than its tag")
        yield open_chunk(opener, header, sealed, index, last)


def open_chunk(
    opener: AESGCM, header: ArtifactHeader, sealed: Chunk, index: int, last: bool
) -> bytes:
    """One chunk's plaintext; on failure, say whether the stream ends in the wrong place."""
    try:
        return opener.decrypt(chunk_nonce(header.nonce_prefix, index, last), sealed, header.digest)
    except InvalidTag:
        pass
    if len(sealed) == header.chunk_size + TAG_SIZE:
        try:
            opener.decrypt(chunk_nonce(header.nonce_prefix, index, not last), sealed, header.digest)
        except InvalidTag:
            pass
        else:
            if last:
                raise IntegrityError(
                    f"truncated: final chunk missing (stream ends after chunk {index})"
                )
            raise IntegrityError(f"data after the final chunk (chunk {index} is the final one)")
    raise IntegrityError(
        f"chunk {index} failed authentication "
        "(damaged, reordered, truncated, or from another artifact)"
    )
