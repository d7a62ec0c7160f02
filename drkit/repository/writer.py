"""Writing one snapshot to every store at once: the commit protocol (DESIGN promise 3).

1. each source's stream is read once, compressed and sealed once, and fanned out to every
   store still healthy (stores that encrypt on their own, restic, get the raw stream);
2. a stream that fails aborts the whole snapshot: uploads abort, nothing is committed, and
   what was written is removed;
3. only then is the sealed manifest written to each store that received every artifact:
   that write is the commit point, per store.
A process killed before step 3 leaves objects without a manifest, which never look complete
(``drkit cleanup`` and the next backup remove them).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drkit import __version__
from drkit.crypto import KeyEncryptionKey, encrypt_chunks
from drkit.errors import describe_failure, is_unreachable
from drkit.repository.compression import compress_chunks
from drkit.repository.fanout import Upload, finish_all
from drkit.repository.layout import (
    SEALED_EXTENSION,
    artifact_context,
    artifact_key,
    manifest_key,
    snapshot_prefix,
)
from drkit.repository.manifest import Artifact, Manifest, StoredObject, seal_manifest, sha256_hex
from drkit.repository.pipeline import read_ahead
from drkit.sources.base import Capture
from drkit.stores.base import Store

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int], None]  # (source name, plaintext bytes read so far)


@dataclass(frozen=True)
class StoreResult:
    """How one store took one snapshot."""

    store: str
    region: str
    ok: bool
    error: str | None
    bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "store": self.store,
            "region": self.region,
            "ok": self.ok,
            "error": self.error,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Compression:
    algorithm: str  # "zstd" | "none"
    level: int = 3


class Digest:
    """Counts and hashes a stream as it passes through."""

    def __init__(self) -> None:
        self.size = 0
        self._sha = hashlib.sha256()

    def through(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.size += len(chunk)
            self._sha.update(chunk)
            yield chunk

    @property
    def hexdigest(self) -> str:
        return self._sha.hexdigest()


@dataclass
class CommittedSnapshot:
    """What ``SnapshotWriter.commit`` did: the manifest, its sealed bytes' hash, and each
    store's result."""

    manifest: Manifest
    manifest_sha256: str
    stores: list[StoreResult]


@dataclass
class SnapshotWriter:
    """One snapshot being written. Use ``add`` per source, then ``commit``; on any exception
    before the commit, ``abort`` removes what was written."""

    plan: str
    snapshot_id: str
    taken_at: datetime
    stores: Sequence[Store]
    keys: Sequence[KeyEncryptionKey]
    compression: Compression
    plan_sha256: str
    failed: dict[str, BaseException] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    #: per store: the bytes it reported holding for this snapshot's artifacts (a restic
    #: repository: its compressed, encrypted size, not the plaintext it was sent)
    stored_bytes: dict[str, int] = field(default_factory=dict)
    #: the previous source's uploads, closed and still ending (restic writing its snapshot, a
    #: last part in flight) while the next source streams: at most two sources per store
    ending: list[tuple[str, list[Upload]]] = field(default_factory=list)

    @property
    def live_stores(self) -> list[Store]:
        return [store for store in self.stores if store.name not in self.failed]

    def add(
        self, source: str, source_type: str, capture: Capture, progress: ProgressCallback | None
    ) -> Artifact:
        """Stream one capture to every healthy store; a store that fails drops out."""
        live = self.live_stores
        sealed_key = artifact_key(self.plan, self.snapshot_id, source, SEALED_EXTENSION)
        raw_key = artifact_key(self.plan, self.snapshot_id, source, capture.extension)
        raw = [Upload(store, raw_key) for store in live if store.wants_plaintext]
        sealed = [Upload(store, sealed_key) for store in live if not store.wants_plaintext]
        plaintext, ciphertext = Digest(), Digest()

        def plaintext_feed(chunks: Iterator[bytes]) -> Iterator[bytes]:
            for chunk in plaintext.through(chunks):
                for upload in raw:
                    upload.send(chunk)
                if progress is not None:
                    progress(source, plaintext.size)
                yield chunk

        context = artifact_context(self.plan, self.snapshot_id, source)
        try:
            # The dump is read on its own thread: the tool writing it never waits for drkit.
            with read_ahead(capture.chunks) as chunks:
                stream = plaintext_feed(chunks)
                if self.compression.algorithm == "zstd":
                    stream = compress_chunks(stream, self.compression.level)
                for chunk in ciphertext.through(encrypt_chunks(stream, self.keys, context)):
                    for upload in sealed:
                        upload.send(chunk)
        except BaseException as error:
            finish_all([*raw, *sealed], abort=error)
            self._settle()
            raise
        for upload in [*raw, *sealed]:
            upload.close()
        self._settle()
        self.ending.append((source, [*raw, *sealed]))
        artifact = Artifact(
            source=source,
            type=source_type,
            format=capture.format or capture.extension,
            compression="zstd" if self.compression.algorithm == "zstd" else "none",
            plaintext_size=plaintext.size,
            plaintext_sha256=plaintext.hexdigest,
            fingerprint=capture.fingerprint,
            tool_versions=capture.tool_versions,
            private=capture.private,
            encrypted=StoredObject(
                key=sealed_key, size=ciphertext.size, sha256=ciphertext.hexdigest
            ),
            raw=StoredObject(key=raw_key, size=plaintext.size, sha256=plaintext.hexdigest)
            if raw
            else None,
            key_names=[key.name for key in self.keys],
        )
        self.artifacts.append(artifact)
        return artifact

    def _settle(self) -> None:
        """Wait for the uploads still ending; a store that failed drops out."""
        for source, uploads in self.ending:
            for upload in uploads:
                upload.wait()
                if upload.error is None:
                    name = upload.store.name
                    self.stored_bytes[name] = self.stored_bytes.get(name, 0) + upload.size
            self._note_failures(uploads, source)
        self.ending.clear()

    def _note_failures(self, uploads: Sequence[Upload], source: str) -> None:
        for upload in uploads:
            if upload.error is not None and upload.store.name not in self.failed:
                self.failed[upload.store.name] = upload.error
                log.warning(
                    "store %s failed while storing %s: %s",
                    upload.store.name,
                    source,
                    describe_failure(upload.error),
                )

    def commit(self, sources: Sequence[str]) -> CommittedSnapshot | None:
        """Seal the manifest and write it to every store that holds every artifact: the commit
        point. None when some source has no artifact (every store failed first): nothing is
        committed. Stores that failed keep no leftovers where they can still be reached."""
        self._settle()
        if [artifact.source for artifact in self.artifacts] != list(sources):
            self.abort(reachable_only=True)
            return None
        try:
            manifest = Manifest(
                plan=self.plan,
                snapshot_id=self.snapshot_id,
                taken_at=self.taken_at,
                finished_at=datetime.now(UTC),
                drkit_version=__version__,
                sources=list(sources),
                artifacts=self.artifacts,
                plan_sha256=self.plan_sha256,
            )
            data = seal_manifest(manifest, self.keys)  # sealed once: the same bytes everywhere
        except BaseException:
            self.abort(reachable_only=True)  # no manifest: the artifacts would be orphans
            raise
        key = manifest_key(self.plan, self.snapshot_id)
        results = []
        for store in self.stores:
            error = self.failed.get(store.name)
            if error is None:
                try:
                    store.put(key, [data])
                except Exception as put_error:
                    error = self.failed[store.name] = put_error
            results.append(
                StoreResult(
                    store.name,
                    store.region,
                    error is None,
                    None if error is None else describe_failure(error),
                    self.stored_bytes.get(store.name, manifest.stored_size(store.wants_plaintext)),
                )
            )
        self.abort(reachable_only=True, only=[r.store for r in results if not r.ok])
        return CommittedSnapshot(manifest, sha256_hex(data), results)

    def abort(self, *, reachable_only: bool = False, only: Sequence[str] | None = None) -> None:
        """Best effort: delete this snapshot's objects from the stores (``only`` some of
        them). With ``reachable_only``, skip stores that failed as unreachable: their
        timeouts would only be paid again, and their leftovers carry no manifest."""
        self._settle()
        for store in self.stores:
            if only is not None and store.name not in only:
                continue
            if reachable_only and is_unreachable(self.failed.get(store.name)):
                continue
            remove_snapshot_objects(store, self.plan, self.snapshot_id)


def remove_snapshot_objects(store: Store, plan: str, snapshot_id: str) -> None:
    """Best effort: delete every object under a snapshot's prefix in one store."""
    try:
        for key in store.list(snapshot_prefix(plan, snapshot_id)):
            store.delete(key)
    except Exception as error:
        log.warning(
            "could not clean up %s in store %s: %s",
            snapshot_id,
            store.name,
            describe_failure(error),
        )
