"""An in-memory Store for fast unit tests of orchestration; it passes the same contract suite
as the real stores."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from drkit.errors import ObjectNotFound
from drkit.stores import check_key
from drkit.stores.base import NO_ABILITIES, Abilities

CHUNK_SIZE = 64 * 1024


class MemoryStore:
    """Objects in a dict, guarded by a lock (drkit writes to stores from several threads)."""

    def __init__(
        self, name: str = "memory", region: str = "local", *, wants_plaintext: bool = False
    ):
        self.name = name
        self.region = region
        self.wants_plaintext = wants_plaintext
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"memory:{self.name} ({self.region})"

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        check_key(key)
        data = b"".join(chunks)  # a failing iterator raises here, before anything is stored
        with self._lock:
            self.objects[key] = data
        return len(data)

    def get(self, key: str) -> Iterator[bytes]:
        check_key(key)
        with self._lock:
            data = self.objects.get(key)
        if data is None:
            raise ObjectNotFound(f"{self.describe()}: no object {key}")
        return iter(
            [data[offset : offset + CHUNK_SIZE] for offset in range(0, len(data), CHUNK_SIZE)]
        )

    def list(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(key for key in self.objects if key.startswith(prefix))

    def size(self, key: str) -> int:
        check_key(key)
        with self._lock:
            data = self.objects.get(key)
        if data is None:
            raise ObjectNotFound(f"{self.describe()}: no object {key}")
        return len(data)

    def abilities(self) -> Abilities:
        return NO_ABILITIES

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self.objects.pop(key, None)
