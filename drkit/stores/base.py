"""The Store interface: opaque bytes by key. Stores never see keys or (except restic, which
encrypts with its own key) plaintext; encryption sits above them in ``drkit.crypto``.

Every implementation passes the shared contract suite in tests/stores/test_contract.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Store(Protocol):
    """A place that holds objects by key (``plan/snapshots/ID/source.drkit``, ``.../manifest.json``).

    Errors: ``ObjectNotFound`` when the store answers but lacks the key; ``StoreUnavailable``
    (or ``StoreFull``) when it cannot be reached or refuses, worth a retry or another store;
    ``IntegrityError`` when it returns data it cannot vouch for.
    """

    name: str
    region: str
    #: True for stores that encrypt on their own (restic): they receive the raw plaintext
    #: stream so their deduplication works; all others receive drkit's ciphertext.
    wants_plaintext: bool

    def describe(self) -> str:
        """Where the store is, for people (``s3://bucket/prefix (us-east-1)``); no secrets."""
        ...

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write the object from ``chunks`` and return the bytes the store holds for it: the
        bytes sent, or for a store that compresses and encrypts on its own (restic) what it
        keeps, so sizes reported per store are what each store really holds.

        Atomic: the key becomes visible only once every chunk is durably written; when
        ``chunks`` raises or the write fails, nothing is visible under ``key`` and leftovers are
        removed where possible. Overwrites an existing object.
        """
        ...

    def get(self, key: str) -> Iterator[bytes]:
        """Stream the object in chunks. Raises ObjectNotFound / StoreUnavailable no later than
        the first chunk. Callers close the iterator (``contextlib.closing``) when they stop early."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix``, sorted."""
        ...

    def size(self, key: str) -> int:
        """Size of the object in bytes; ObjectNotFound when absent."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; idempotent (deleting a missing key is not an error)."""
        ...

    def abilities(self) -> Abilities:
        """What this store can do beyond moving bytes (``Abilities``). Wrappers answer for
        the store they wrap, adapting an ability where their own behaviour demands (dry-run
        compaction does nothing)."""
        ...


# --- optional abilities ------------------------------------------------------------------------


@runtime_checkable
class LockStatusReader(Protocol):
    """Reads back an object's S3 Object Lock retention (``S3Store``)."""

    def lock_status(self, key: str) -> tuple[str | None, datetime | None]:
        """(mode, retain-until) of the object's retention, (None, None) without one;
        ObjectNotFound when the object is gone."""
        ...


@runtime_checkable
class Compactor(Protocol):
    """A store whose deletions free space only once compacted (``restic prune``)."""

    def compact(self) -> None:
        """Reclaim the space of deleted objects. StoreError on failure."""
        ...


@runtime_checkable
class PartialWriteRemover(Protocol):
    """A store whose interrupted writes can leave something behind that ``list`` does not
    show (a filesystem store's temporary files). S3's incomplete multipart uploads are left
    to the bucket's AbortIncompleteMultipartUpload lifecycle rule; restic removes its own."""

    def remove_partial_writes(self, prefix: str) -> list[str]:
        """Remove every leftover of an interrupted write under ``prefix``; return what went.
        Only for leftovers of dead writers: a write in progress under ``prefix`` would fail."""
        ...


@runtime_checkable
class Prober(Protocol):
    """A store that can prove itself reachable and writable before a command needs it
    (``drkit check``)."""

    def probe(self) -> str:
        """Prove the store reachable and writable and leave nothing behind; return what was
        proven, for people. Raises StoreUnavailable (or StoreFull) saying what failed."""
        ...


@dataclass(frozen=True)
class Abilities:
    """A store's optional abilities, each None where the store lacks it."""

    #: reads back S3 Object Lock retention (S3 stores)
    lock_status: LockStatusReader | None = None
    #: reclaims the space of deleted objects (restic stores)
    compactor: Compactor | None = None
    #: removes what writes cut short by a killed process left (filesystem temporary files)
    partial_writes: PartialWriteRemover | None = None
    #: proves itself reachable and writable, leaving nothing behind (``drkit check``)
    prober: Prober | None = None


#: a store that can do nothing beyond moving bytes
NO_ABILITIES = Abilities()


def creation_folder(path: Path) -> tuple[Path, bool]:
    """For a store folder that does not exist yet: the nearest existing folder above it (where
    the first write creates it), and whether that is a folder drkit can create entries in."""
    parent = next(
        folder for folder in (path.absolute(), *path.absolute().parents) if folder.exists()
    )
    return parent, parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
