"""The repository layer: the one place that writes and reads snapshots in stores, as restic's
``internal/repository`` sits between its backends and its commands.

- ``layout``: snapshot ids and where a snapshot's objects live in a store;
- ``manifest``: the manifest model, sealed (encrypted and authenticated) so a store cannot read
  or forge it, and the reading of release 0.1.0's plain manifests;
- ``compression``, ``fanout``, ``writer``: the compress -> seal -> fan-out pipeline and the commit
  protocol (artifacts first, the manifest last, per store);
- ``staging``: an artifact fetched and proven intact before a byte reaches a target;
- ``copies``: per-store trust: a store's copy counts once its own manifest proves it;
- ``locate``: finding snapshots (catalog or stores) and comparing what stores hold;
- ``leftovers``: removing what backups that never committed left in stores;
- ``repository``: the ``Repository`` object the commands use.

Actions (``drkit.actions``) call this package; it calls stores, crypto and sources, never
the other way round.
"""

from drkit.repository.compression import compress_chunks, decompress_chunks
from drkit.repository.copies import SnapshotCopies
from drkit.repository.layout import snapshot_time
from drkit.repository.leftovers import remove_stale_uncommitted
from drkit.repository.locate import (
    Lag,
    SnapshotEntry,
    choose_snapshot,
    find_lagging_stores,
    find_snapshots,
    list_store_snapshots,
    prove_entry,
)
from drkit.repository.manifest import Artifact, Manifest, OpenedManifest
from drkit.repository.repository import Repository
from drkit.repository.staging import ChunkReader, StagedArtifact
from drkit.repository.writer import (
    CommittedSnapshot,
    Compression,
    ProgressCallback,
    SnapshotWriter,
    StoreResult,
)

__all__ = [
    "Artifact",
    "ChunkReader",
    "CommittedSnapshot",
    "Compression",
    "Lag",
    "Manifest",
    "OpenedManifest",
    "ProgressCallback",
    "Repository",
    "SnapshotCopies",
    "SnapshotEntry",
    "SnapshotWriter",
    "StagedArtifact",
    "StoreResult",
    "choose_snapshot",
    "compress_chunks",
    "decompress_chunks",
    "find_lagging_stores",
    "find_snapshots",
    "list_store_snapshots",
    "prove_entry",
    "remove_stale_uncommitted",
    "snapshot_time",
]
