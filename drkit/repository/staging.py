"""Fetch an artifact and prove it intact before a single byte reaches a restore target.

An artifact is downloaded once into a private staging file while its sha256 is computed, then
authenticated end to end (every chunk decrypted, decompressed and the plaintext hashed against
the manifest). For a source that loads from a file anyway (PostgreSQL: ``pg_restore -j`` needs
one it can seek in), that pass also writes the plaintext beside it, so the artifact is
decrypted and decompressed once; the file is handed over only once the whole artifact has
authenticated. Other sources get the plaintext decrypted again, streaming, into the target,
which keeps it off the disk (AES-GCM runs at GB/s).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from drkit.crypto import KeyEncryptionKey, decrypt_chunks
from drkit.errors import IntegrityError
from drkit.repository.compression import decompress_chunks
from drkit.repository.layout import artifact_context
from drkit.repository.manifest import Artifact, Manifest
from drkit.stores.base import Store

READ_SIZE = 1 << 20
#: (phase, bytes done, bytes in all): ``fetch`` counts stored bytes, ``decrypt`` plaintext
StageProgress = Callable[[str, int, int], None]
Progress = Callable[[int], None]


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
    #: the verified plaintext, written during the authenticating pass (``keep_plaintext``)
    plaintext_path: Path | None = None

    def plaintext_chunks(self, keys: Sequence[KeyEncryptionKey]) -> Iterator[bytes]:
        """The artifact's plaintext, decrypted and decompressed as it streams."""
        if self.plaintext_path is not None:
            return read_file_chunks(self.plaintext_path)
        chunks = read_file_chunks(self.path)
        if not self.encrypted:
            return chunks
        context = artifact_context(
            self.manifest.plan, self.manifest.snapshot_id, self.artifact.source
        )
        plain = decrypt_chunks(chunks, keys, context)
        return decompress_chunks(plain) if self.artifact.compression == "zstd" else plain

    def open_plaintext(self, keys: Sequence[KeyEncryptionKey]) -> IO[bytes]:
        """The plaintext as a file: the verified staging file itself where there is one (a
        source may then load it in place, see ``drkit.sources.pgarchive.seekable_archive``),
        else a stream decrypting as it is read."""
        if self.plaintext_path is not None:
            return self.plaintext_path.open("rb")
        if not self.encrypted:
            return self.path.open("rb")
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


def _phase(progress: StageProgress | None, phase: str, total: int) -> Progress | None:
    if progress is None:
        return None
    report = progress
    return lambda done: report(phase, done, total)


def _hash_all(
    chunks: Iterable[bytes], copy_to: IO[bytes] | None = None, progress: Progress | None = None
) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
        if progress is not None:
            progress(size)
    return size, digest.hexdigest()


def stage_artifact(
    store: Store,
    manifest: Manifest,
    artifact: Artifact,
    keys: Sequence[KeyEncryptionKey],
    directory: Path,
    *,
    keep_plaintext: bool = False,
    progress: StageProgress | None = None,
) -> StagedArtifact:
    """Download and fully verify one artifact from one store; IntegrityError names the store.
    ``manifest`` must be authenticated (``open_manifest``): it vouches for the object. With
    ``keep_plaintext``, the verifying pass writes the plaintext to a staging file too (and the
    ciphertext is removed once verified)."""
    stored = artifact.stored_object(store.wants_plaintext)
    if stored is None:
        raise IntegrityError(f"store {store.name}: manifest lists no object for {artifact.source}")
    started = time.monotonic()
    descriptor, name = tempfile.mkstemp(
        prefix=f"{artifact.source}.", suffix=".staged", dir=directory
    )
    path = Path(name)
    chunks = store.get(stored.key)
    fetching = _phase(progress, "fetch", stored.size)
    with os.fdopen(descriptor, "wb") as handle, _closing(chunks):
        size, sha256 = _hash_all(chunks, handle, fetching)
    fetched = time.monotonic()
    if size != stored.size or sha256 != stored.sha256:
        raise IntegrityError(
            f"store {store.name}: {stored.key} is corrupt "
            f"({size} bytes, sha256 {sha256[:12]}; manifest says {stored.size} bytes, "
            f"sha256 {stored.sha256[:12]})"
        )
    staged = StagedArtifact(
        path, artifact, manifest, store.name, not store.wants_plaintext, fetched - started, 0.0
    )
    if staged.encrypted:
        plain_path = path.with_suffix(".plain") if keep_plaintext else None
        try:
            with contextlib.ExitStack() as stack:
                copy_to = None
                if plain_path is not None:  # like mkstemp: private, never an existing file
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
                    copy_to = stack.enter_context(
                        os.fdopen(os.open(plain_path, flags, 0o600), "wb")
                    )
                decrypting = _phase(progress, "decrypt", artifact.plaintext_size)
                plain_size, plain_sha = _hash_all(
                    staged.plaintext_chunks(keys), copy_to, decrypting
                )
            if plain_size != artifact.plaintext_size or plain_sha != artifact.plaintext_sha256:
                raise IntegrityError(
                    f"store {store.name}: {artifact.source} decrypts to data that "
                    "differs from what was backed up"
                )
        except BaseException:
            if plain_path is not None:  # what failed to authenticate is never left to load
                plain_path.unlink(missing_ok=True)
            raise
        if plain_path is not None:
            path.unlink()
            staged.plaintext_path = plain_path
    staged.verify_seconds = time.monotonic() - fetched
    return staged


def prove_first_chunk(
    store: Store, manifest: Manifest, artifact: Artifact, keys: Sequence[KeyEncryptionKey]
) -> None:
    """Read a sealed artifact only up to its first chunk and authenticate it under the
    artifact's context: proof that a key holder wrote it for this snapshot and source."""
    assert artifact.encrypted is not None
    context = artifact_context(manifest.plan, manifest.snapshot_id, artifact.source)
    chunks = store.get(artifact.encrypted.key)
    with _closing(chunks):
        next(iter(decrypt_chunks(chunks, keys, context)), None)


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
