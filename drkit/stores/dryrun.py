"""A Store that reads the Store it wraps and never changes it: a dry run as a wrapper, not a
flag threaded through every action.

Writes and deletes land in an in-memory overlay, so what a dry run does next sees them as if
they had happened (a dry-run prune that deletes a manifest then lists the snapshot as gone),
and ``changes`` lists, in order, what a real run would have done. Compaction (``Abilities.compactor``)
is recorded, not run. It passes the shared store contract suite.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import threading
from collections.abc import Iterable, Iterator

from drkit.errors import ObjectNotFound
from drkit.stores import check_key
from drkit.stores.base import Abilities, Store

log = logging.getLogger(__name__)
CHUNK_SIZE = 1 << 20


class DryRunStore:
    """Wraps ``inner``; ``changes`` holds ``"put KEY"``, ``"delete KEY"``, ``"compact"``."""

    def __init__(self, inner: Store):
        self.inner = inner
        self.name = inner.name
        self.region = inner.region
        self.wants_plaintext = inner.wants_plaintext
        self.changes: list[str] = []
        self._written: dict[str, bytes] = {}
        self._deleted: set[str] = set()
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"{self.inner.describe()} [dry run]"

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        check_key(key)
        self.inner.list(key)  # a store that cannot be reached fails here, as a real put would
        data = b"".join(chunks)
        with self._lock:
            self._written[key] = data
            self._deleted.discard(key)
            self.changes.append(f"put {key}")
        log.info("store %s: would write %s (%d bytes)", self.name, key, len(data))
        return len(data)

    def get(self, key: str) -> Iterator[bytes]:
        check_key(key)
        with self._lock:
            data = self._written.get(key)
            deleted = key in self._deleted
        if data is not None:
            return iter([data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)])
        if deleted:
            raise ObjectNotFound(f"{self.describe()}: no object {key}")
        return self.inner.get(key)

    def size(self, key: str) -> int:
        check_key(key)
        with self._lock:
            data = self._written.get(key)
            deleted = key in self._deleted
        if data is not None:
            return len(data)
        if deleted:
            raise ObjectNotFound(f"{self.describe()}: no object {key}")
        return self.inner.size(key)

    def delete(self, key: str) -> None:
        check_key(key)
        self.inner.list(key)  # a store that cannot be reached fails here, as a real delete would
        with self._lock:
            self._written.pop(key, None)
            self._deleted.add(key)
            self.changes.append(f"delete {key}")
        log.info("store %s: would delete %s", self.name, key)

    def list(self, prefix: str = "") -> builtins.list[str]:
        below = self.inner.list(prefix)
        with self._lock:
            keys = {key for key in below if key not in self._deleted}
            keys |= {key for key in self._written if key.startswith(prefix)}
        return sorted(keys)

    def abilities(self) -> Abilities:
        below = self.inner.abilities()
        compactor = RecordedCompaction(self) if below.compactor is not None else None
        # a probe writes (and removes) an object, and removing partial writes deletes: a dry
        # run changes nothing at all
        return dataclasses.replace(below, compactor=compactor, prober=None, partial_writes=None)


class RecordedCompaction:
    """What compacting a dry-run store does: note it."""

    def __init__(self, store: DryRunStore):
        self._store = store

    def compact(self) -> None:
        self._store.changes.append("compact")
        log.info("store %s: would compact", self._store.name)
