"""The Store interface: opaque bytes by key. Stores never see keys or (except restic, which
encrypts with its own key) plaintext; encryption sits above them in ``drkit.crypto``.

Every implementation passes the shared contract suite in tests/stores/test_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
        """Write the object from ``chunks`` and return its size in bytes.

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
