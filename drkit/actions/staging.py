"""Fetch an artifact and prove it intact before a single byte reaches a restore target.

An artifact is downloaded once into a private staging file while its sha256 is computed, then
authenticated end to end (every chunk decrypted, decompressed and the plaintext hashed against
the manifest). Only then is it decrypted again, streaming, into the target. Decrypting twice
costs little (AES-GCM runs at GB/s) and keeps plaintext off the disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from drkit.compression import decompress_chunks
from drkit.crypto import KeyEncryptionKey, decrypt_chunks
from drkit.errors import IntegrityError
from drkit.manifest import Artifact, Manifest, artifact_context
from drkit.stores.base import Store

READ_SIZE = 1 << 20


@dataclass
class StagedArtifact:
    """A verified copy of one artifact on local disk, ready to be loaded."""

    path: Path
    artifact: Artifact
    manifest: Manifest
    store: str
    encrypted: bool
    fetch_seconds: float
    verify_seconds: float

    def plaintext_chunks(self, keys: Sequence[KeyEncryptionKey]) -> Iterator[bytes]:
        """The artifact's plaintext, decrypted and decompressed as it streams."""
        chunks = read_file_chunks(self.path)
        if not self.encrypted:
            return chunks
        context = artifact_context(
            self.manifest.plan, self.manifest.snapshot_id, self.artifact.source
        )
        plain = decrypt_chunks(chunks, keys, context)
        return decompress_chunks(plain) if self.artifact.compression == "zstd" else plain

    def open_plaintext(self, keys: Sequence[KeyEncryptionKey]) -> IO[bytes]:
        return io.BufferedReader(ChunkReader(self.plaintext_chunks(keys)), buffer_size=READ_SIZE)


@contextlib.contextmanager
def _closing(chunks: Iterator[bytes]) -> Iterator[None]:
    """Close a generator-backed stream even when reading stops early (connections, processes)."""
    try:
        yield
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def read_file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(READ_SIZE):
            yield chunk


def _hash_all(chunks: Iterable[bytes]) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def stage_artifact(
    store: Store,
    manifest: Manifest,
    artifact: Artifact,
    keys: Sequence[KeyEncryptionKey],
    directory: Path,
) -> StagedArtifact:
    """Download and fully verify one artifact from one store; IntegrityError names the store."""
    stored = artifact.raw if store.wants_plaintext else artifact.encrypted
    if stored is None:
        raise IntegrityError(f"store {store.name}: manifest lists no object for {artifact.source}")
    started = time.monotonic()
    descriptor, name = tempfile.mkstemp(
        prefix=f"{artifact.source}.", suffix=".staged", dir=directory
    )
    path = Path(name)
    digest, size = hashlib.sha256(), 0
    chunks = store.get(stored.key)
    with os.fdopen(descriptor, "wb") as handle, _closing(chunks):
        for chunk in chunks:
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    fetched = time.monotonic()
    if size != stored.size or digest.hexdigest() != stored.sha256:
        raise IntegrityError(
            f"store {store.name}: {stored.key} is corrupt "
            f"({size} bytes, sha256 {digest.hexdigest()[:12]}; manifest says {stored.size} bytes, "
            f"sha256 {stored.sha256[:12]})"
        )
    staged = StagedArtifact(
        path, artifact, manifest, store.name, not store.wants_plaintext, fetched - started, 0.0
    )
    if staged.encrypted:
        plain_size, plain_sha = _hash_all(staged.plaintext_chunks(keys))
        if plain_size != artifact.plaintext_size or plain_sha != artifact.plaintext_sha256:
            raise IntegrityError(
                f"store {store.name}: {artifact.source} decrypts to data that "
                "differs from what was backed up"
            )
    staged.verify_seconds = time.monotonic() - fetched
    return staged


class ChunkReader(io.RawIOBase):
    """A read-only binary file over an iterator of chunks (for restore tools' stdin)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = memoryview(b"")
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._offset >= len(self._buffer):
            try:
                self._buffer, self._offset = memoryview(next(self._chunks)), 0
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer) - self._offset)
        target[:size] = self._buffer[self._offset : self._offset + size]
        self._offset += size
        return size

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()
