"""The Repository: one plan's snapshots in its stores, read and written through one object.

It knows the layout, seals and opens manifests, writes snapshots with the commit protocol,
stages artifacts as authenticated plaintext, and deletes snapshots in the reverse order of
the commit. Commands (``drkit.actions``) call it; nothing else touches store keys or manifest
bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from drkit import leases
from drkit.crypto import KeyEncryptionKey
from drkit.errors import IntegrityError, KeyUnavailableError, ObjectNotFound, UsageError
from drkit.repository.layout import (
    evidence_key,
    evidence_prefix,
    manifest_key,
    new_snapshot_id,
    snapshot_ids_from_keys,
    snapshot_prefix,
    snapshot_time,
    uncommitted_ids_from_keys,
)
from drkit.repository.manifest import (
    Artifact,
    Manifest,
    OpenedManifest,
    is_sealed,
    open_manifest,
    sha256_hex,
)
from drkit.repository.staging import (
    StagedArtifact,
    StageProgress,
    prove_first_chunk,
    stage_artifact,
)
from drkit.repository.writer import Compression, SnapshotWriter
from drkit.stores.base import Store

log = logging.getLogger(__name__)
#: the lease kind of a snapshot being written (drkit/leases/kinds.py names its cleaner)
UNCOMMITTED_KIND = "uncommitted-snapshot"
#: manifests are small; a bigger object at a manifest's key is not one (and is not read whole)
MAX_MANIFEST_SIZE = 16 << 20


@dataclass
class Repository:
    """The snapshots of plan ``plan`` in ``stores``, sealed for ``keys``."""

    plan: str
    stores: list[Store]
    keys: list[KeyEncryptionKey]
    #: per store: the id of its oldest sealed snapshot, once looked up (downgrade guard)
    _first_sealed: dict[str, str | None] = field(default_factory=dict, repr=False)

    def store(self, name: str) -> Store:
        for store in self.stores:
            if store.name == name:
                return store
        names = ", ".join(store.name for store in self.stores)
        raise UsageError(f"the plan has no store named {name!r}", hint=f"stores: {names}")

    def ordered_stores(self, first: str | None) -> list[Store]:
        """The plan's order, or the named store first (``--store NAME``)."""
        if first is None:
            return list(self.stores)
        chosen = self.store(first)
        return [chosen, *(store for store in self.stores if store is not chosen)]

    # --- writing -----------------------------------------------------------------------------

    @contextmanager
    def writing(
        self, taken_at: datetime, compression: Compression, plan_sha256: str
    ) -> Iterator[SnapshotWriter]:
        """A new snapshot taken at ``taken_at``, to be written to every store, under a lease:
        if this process dies before the block ends, the next drkit command on the plan (or
        ``drkit cleanup``) removes the snapshot's objects from every store where it has no
        manifest (``drkit.repository.leftovers``)."""
        writer = SnapshotWriter(
            self.plan,
            new_snapshot_id(taken_at),
            taken_at,
            self.stores,
            self.keys,
            compression,
            plan_sha256,
        )
        description = f"snapshot {writer.snapshot_id} being written"
        data = {"snapshot_id": writer.snapshot_id}
        with leases.holding(UNCOMMITTED_KIND, description, plan=self.plan, data=data):
            yield writer

    # --- reading -----------------------------------------------------------------------------

    def list_snapshot_ids(self, store: Store) -> list[str]:
        """Ids of the snapshots committed in ``store`` (their manifest is there), oldest first.
        Listed, not proven: ``open_manifest`` proves one."""
        return snapshot_ids_from_keys(self.plan, store.list(snapshot_prefix(self.plan)))

    def list_uncommitted_ids(self, store: Store) -> list[str]:
        """Ids with objects in ``store`` but no manifest: leftovers of backups that never
        committed (or one being written right now)."""
        return uncommitted_ids_from_keys(self.plan, store.list(snapshot_prefix(self.plan)))

    def read_manifest_bytes(self, store: Store, snapshot_id: str) -> bytes:
        key = manifest_key(self.plan, snapshot_id)
        if store.size(key) > MAX_MANIFEST_SIZE:
            raise IntegrityError(f"store {store.name}: {key} is too large to be a manifest")
        return b"".join(store.get(key))

    def open_manifest(
        self, store: Store, snapshot_id: str, *, expected_sha256: str | None = None
    ) -> OpenedManifest:
        """The manifest ``store`` holds for ``snapshot_id``, authenticated and checked.

        Raises IntegrityError naming the store when it is damaged, forged, or differs from the
        one recorded at backup time (``expected_sha256``, from the catalog); StoreError when
        the store cannot deliver it; KeyUnavailableError when no key opens it."""
        data = self.read_manifest_bytes(store, snapshot_id)
        differs = expected_sha256 is not None and sha256_hex(data) != expected_sha256
        try:
            opened = open_manifest(data, self.keys, plan=self.plan, snapshot_id=snapshot_id)
        except IntegrityError as error:
            raise IntegrityError(f"store {store.name}: {error.message}", hint=error.hint) from None
        except KeyUnavailableError:
            if not differs:
                raise
            opened = None  # not the manifest drkit wrote: say that, not "wrong key"
        if differs or opened is None:
            raise IntegrityError(
                f"store {store.name}: manifest of {snapshot_id} differs from the one recorded "
                "at backup time"
            )
        if not opened.authenticated:
            self._refuse_downgrade(store, snapshot_id)
            self._vouch_for_artifacts(store, opened.manifest)
            log.warning(
                "store %s: snapshot %s has a manifest in the 0.1.0 format, which nothing "
                "authenticates; its artifacts are checked against it and prove it is real",
                store.name,
                snapshot_id,
            )
        return opened

    def _vouch_for_artifacts(self, store: Store, manifest: Manifest) -> None:
        """For a manifest nothing authenticates: prove each artifact it names was written by a
        key holder for this very snapshot and source (a sealed artifact's header and first
        chunk authenticate under its context; a restic object exists where only restic's
        password lets anyone write). A forged plain manifest then cannot conjure a snapshot
        that does not exist."""
        for artifact in manifest.artifacts:
            stored = artifact.stored_object(store.wants_plaintext)
            if stored is None:
                raise IntegrityError(
                    f"store {store.name}: manifest lists no object for {artifact.source}"
                )
            try:
                if store.wants_plaintext:
                    if store.size(stored.key) != stored.size:
                        raise IntegrityError(f"{stored.key} is not the size its manifest says")
                else:
                    prove_first_chunk(store, manifest, artifact, self.keys)
            except IntegrityError as error:
                raise IntegrityError(
                    f"store {store.name}: {artifact.source} does not prove the unauthenticated "
                    f"manifest: {error.message}"
                ) from None

    def _refuse_downgrade(self, store: Store, snapshot_id: str) -> None:
        """A plain-JSON manifest is only believable for a snapshot taken before the store's
        first sealed one: drkit never writes the old format again."""
        if store.name not in self._first_sealed:
            self._first_sealed[store.name] = self._find_first_sealed(store)
        first_sealed = self._first_sealed[store.name]
        if first_sealed is not None and snapshot_id > first_sealed:
            raise IntegrityError(
                f"store {store.name}: snapshot {snapshot_id} has an unauthenticated manifest "
                f"but is newer than the sealed snapshot {first_sealed}: forged"
            )

    def _find_first_sealed(self, store: Store) -> str | None:
        for snapshot_id in self.list_snapshot_ids(store):
            try:
                if is_sealed(self.read_manifest_bytes(store, snapshot_id)):
                    return snapshot_id
            except (ObjectNotFound, IntegrityError):
                continue
        return None

    def stage_artifact(
        self,
        store: Store,
        manifest: Manifest,
        artifact: Artifact,
        directory: Path,
        *,
        keep_plaintext: bool = False,
        progress: StageProgress | None = None,
    ) -> StagedArtifact:
        """Fetch one artifact from ``store`` into ``directory`` and prove it intact against
        ``manifest`` (which must have been opened with ``open_manifest``); ``keep_plaintext``
        and ``progress``: see ``drkit.repository.staging.stage_artifact``."""
        return stage_artifact(
            store,
            manifest,
            artifact,
            self.keys,
            directory,
            keep_plaintext=keep_plaintext,
            progress=progress,
        )

    def object_keys(self, store: Store, manifest: Manifest) -> list[tuple[str, datetime]]:
        """Every object of the snapshot in ``store``, each with a time it was written no
        earlier than: artifacts after the snapshot was taken, the manifest after it finished
        (what Object Lock retention is measured from)."""
        keys = [
            (stored.key, manifest.taken_at)
            for artifact in manifest.artifacts
            if (stored := artifact.stored_object(store.wants_plaintext)) is not None
        ]
        keys.append((manifest_key(self.plan, manifest.snapshot_id), manifest.finished_at))
        return keys

    def list_snapshot_objects(self, store: Store, snapshot_id: str) -> list[str]:
        """Every key under the snapshot's prefix in ``store`` (committed or not)."""
        return store.list(snapshot_prefix(self.plan, snapshot_id))

    def remove_uncommitted(self, store: Store, snapshot_id: str) -> list[str]:
        """Remove what a backup that never committed left in ``store``: every object of the
        snapshot when it has no manifest there, and temporary files of cut-short writes.
        Returns what was removed; a committed snapshot keeps its objects."""
        prefix = snapshot_prefix(self.plan, snapshot_id)
        removed = []
        partial = store.abilities().partial_writes
        if partial is not None:
            removed += partial.remove_partial_writes(prefix)
        keys = store.list(prefix)
        if manifest_key(self.plan, snapshot_id) in keys:
            return removed
        for key in keys:
            store.delete(key)
            removed.append(key)
        return removed

    # --- evidence ----------------------------------------------------------------------------

    def write_evidence(self, store: Store, seq: int, line: str) -> None:
        """Copy one signed evidence record to ``store`` (plain JSON: it is made to be read by
        anyone holding the public key, and holds no secret)."""
        store.put(evidence_key(self.plan, seq), [line.encode() + b"\n"])

    def evidence_positions(self, store: Store) -> set[int]:
        """The positions of the evidence records ``store`` holds."""
        prefix = evidence_prefix(self.plan)
        found = set()
        for key in store.list(prefix):
            name = key.removeprefix(prefix).removesuffix(".json")
            if name.isdigit():
                found.add(int(name))
        return found

    def read_evidence(self, store: Store) -> list[str]:
        """The plan's evidence records in ``store``, in the order of their positions."""
        return [
            b"".join(store.get(key)).decode("utf-8", errors="replace").strip()
            for key in store.list(evidence_prefix(self.plan))
        ]

    # --- deleting ----------------------------------------------------------------------------

    def delete_snapshot(
        self,
        store: Store,
        snapshot_id: str,
        on_uncommitted: Callable[[], None] | None = None,
    ) -> None:
        """Delete a snapshot from one store: the manifest first (undoing the commit; then
        ``on_uncommitted`` runs), then its other objects, so an interrupted delete never
        leaves a manifest without its objects."""
        keys = store.list(snapshot_prefix(self.plan, snapshot_id))  # before the manifest goes
        manifest = manifest_key(self.plan, snapshot_id)
        store.delete(manifest)
        if on_uncommitted is not None:
            on_uncommitted()
        for key in keys:
            if key != manifest:
                store.delete(key)


def newest_first(snapshot_ids: Sequence[str]) -> list[str]:
    return sorted(snapshot_ids, reverse=True)


def taken_at(snapshot_id: str) -> datetime | None:
    return snapshot_time(snapshot_id)
