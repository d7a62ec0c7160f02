"""A Store that injects failures into the Store it wraps, for tests: a connection reset or a
full disk in the middle of a put, a get that breaks off, a flipped byte on read, or a few
failing calls before things work again (to exercise retries and failover).
"""

from __future__ import annotations

import builtins
import copy
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from drkit.errors import StoreError, StoreFull, StoreUnavailable
from drkit.stores.base import Abilities, Store

OPERATIONS = ("put", "get", "list", "size", "delete")


def connection_reset() -> StoreUnavailable:
    return StoreUnavailable("connection reset by peer (injected fault)")


def disk_full() -> StoreFull:
    return StoreFull("No space left on device (injected fault)")


class FaultyStore:
    """Wraps ``inner`` and misbehaves as configured.

    - ``fail_put_after_bytes``: a put hands ``inner`` exactly that many bytes, then its stream
      raises ``error``, as a connection reset or ENOSPC mid-upload would (``inner`` then
      cleans up as after any failing stream). 0 fails at the first chunk.
    - ``fail_get_after_bytes``: a get yields that many bytes, then raises ``error``
      (0: before the first chunk).
    - ``corrupt_get_byte_at``: a get flips the lowest bit of the byte at that offset.
    - ``fail_next``: ``{"list": 2}`` makes the next two ``list`` calls raise ``error`` before
      reaching ``inner``.

    ``calls`` counts every call per operation, failed or not.
    """

    def __init__(
        self,
        inner: Store,
        *,
        error: StoreError | None = None,
        fail_put_after_bytes: int | None = None,
        fail_get_after_bytes: int | None = None,
        corrupt_get_byte_at: int | None = None,
        fail_next: Mapping[str, int] | None = None,
    ):
        unknown = set(fail_next or {}) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"fail_next names unknown operations: {sorted(unknown)}")
        self.inner = inner
        self.name = inner.name
        self.region = inner.region
        self.wants_plaintext = inner.wants_plaintext
        self.error: StoreError = error if error is not None else connection_reset()
        self.fail_put_after_bytes = fail_put_after_bytes
        self.fail_get_after_bytes = fail_get_after_bytes
        self.corrupt_get_byte_at = corrupt_get_byte_at
        self.fail_next: Counter[str] = Counter(fail_next or {})
        self.calls: Counter[str] = Counter()

    def describe(self) -> str:
        return f"{self.inner.describe()} [faulty]"

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        self._enter("put")
        if self.fail_put_after_bytes is not None:
            chunks = self._break_after(chunks, self.fail_put_after_bytes)
        return self.inner.put(key, chunks)

    def get(self, key: str) -> Iterator[bytes]:
        self._enter("get")
        if self.fail_get_after_bytes == 0:
            raise self._fresh_error()
        return self._damage(self.inner.get(key))

    def size(self, key: str) -> int:
        self._enter("size")
        return self.inner.size(key)

    def delete(self, key: str) -> None:
        self._enter("delete")
        self.inner.delete(key)

    def list(self, prefix: str = "") -> builtins.list[str]:
        self._enter("list")
        return self.inner.list(prefix)

    def abilities(self) -> Abilities:
        return self.inner.abilities()

    def _damage(self, inner_stream: Iterator[bytes]) -> Iterator[bytes]:
        stream: Iterable[bytes] = inner_stream
        if self.corrupt_get_byte_at is not None:
            stream = flip_bit_at(stream, self.corrupt_get_byte_at)
        if self.fail_get_after_bytes is not None:
            stream = self._break_after(stream, self.fail_get_after_bytes)
        try:
            yield from stream
        finally:
            close = getattr(inner_stream, "close", None)
            if close is not None:
                close()

    def _enter(self, operation: str) -> None:
        self.calls[operation] += 1
        if self.fail_next[operation] > 0:
            self.fail_next[operation] -= 1
            raise self._fresh_error()

    def _fresh_error(self) -> StoreError:
        return copy.copy(self.error)

    def _break_after(self, chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
        passed = 0
        for chunk in chunks:
            if passed + len(chunk) > limit:
                if limit > passed:
                    yield chunk[: limit - passed]
                raise self._fresh_error()
            passed += len(chunk)
            yield chunk


def flip_bit_at(chunks: Iterable[bytes], offset: int) -> Iterator[bytes]:
    """Pass ``chunks`` through with the lowest bit of the byte at ``offset`` flipped."""
    position = 0
    for chunk in chunks:
        if position <= offset < position + len(chunk):
            damaged = bytearray(chunk)
            damaged[offset - position] ^= 0x01
            chunk = bytes(damaged)
        position += len(chunk)
        yield chunk
