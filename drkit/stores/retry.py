"""A Store that retries transient failures of the Store it wraps, with full-jitter backoff.

Retried: StoreUnavailable from ``list``, ``size``, ``delete`` and ``get`` up to its first chunk.
Not retried: StoreFull (space does not come back in seconds), ObjectNotFound, IntegrityError,
and every ``put``. A put reads its stream exactly once (the stream is a live database dump
being sent to several stores at the same time), so after a failed attempt the bytes already
consumed are gone and a second attempt would store a truncated object; a failed put is
reported, and the backup counts that store as failed. Once ``get`` has yielded a chunk, a
failure is raised too: restarting would hand the caller bytes it has already received.
"""

from __future__ import annotations

import builtins
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from drkit.errors import StoreUnavailable, is_unreachable
from drkit.stores.base import Abilities, Store

log = logging.getLogger(__name__)
Result = TypeVar("Result")


def is_transient(error: BaseException) -> bool:
    """True for failures worth another attempt on the same store."""
    return is_unreachable(error)


class RetryingStore:
    """Wraps ``inner``; ``attempts`` counts the first try. ``sleep`` and ``jitter`` (a
    number in [0, 1)) are injectable so tests run without waiting."""

    def __init__(
        self,
        inner: Store,
        attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ):
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.region = inner.region
        self.wants_plaintext = inner.wants_plaintext
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._jitter = jitter

    def describe(self) -> str:
        return self.inner.describe()

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        return self.inner.put(key, chunks)  # never retried: see the module docstring

    def get(self, key: str) -> Iterator[bytes]:
        stream, first = self._call("get", key, lambda: open_stream(self.inner, key))
        return chain_first(stream, first)

    def size(self, key: str) -> int:
        return self._call("size", key, lambda: self.inner.size(key))

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.inner.delete(key))

    def list(self, prefix: str = "") -> builtins.list[str]:
        return self._call("list", prefix, lambda: self.inner.list(prefix))

    def abilities(self) -> Abilities:
        return self.inner.abilities()

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): full jitter."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return ceiling * self._jitter()

    def _call(self, operation: str, key: str, attempt: Callable[[], Result]) -> Result:
        for retry in range(1, self.attempts):
            try:
                return attempt()
            except StoreUnavailable as error:
                if not is_transient(error):
                    raise
                wait = self.delay(retry)
                log.warning(
                    "store %s: %s %s failed (%s); retry %d of %d in %.1fs",
                    self.name,
                    operation,
                    key or "/",
                    error,
                    retry,
                    self.attempts - 1,
                    wait,
                )
                self._sleep(wait)
        return attempt()


def open_stream(store: Store, key: str) -> tuple[Iterator[bytes], bytes | None]:
    """Start ``store.get(key)`` and read its first chunk (None for an empty object), so that
    every error a retry can help with happens here."""
    stream = store.get(key)
    try:
        return stream, next(stream)
    except StopIteration:
        return stream, None
    except BaseException:
        close_stream(stream)
        raise


def chain_first(stream: Iterator[bytes], first: bytes | None) -> Iterator[bytes]:
    """Yield ``first`` and then the rest of ``stream``, closing it however iteration ends."""
    try:
        if first is None:
            return
        yield first
        yield from stream
    finally:
        close_stream(stream)


def close_stream(stream: Iterator[bytes]) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()
