"""The fault-injecting wrapper does exactly the damage it is asked for."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from drkit.errors import StoreFull, StoreUnavailable
from drkit.stores.faults import FaultyStore, disk_full
from drkit.stores.memory import MemoryStore

KEY = "orders/snapshots/20260101T000000Z-abc123/orders-db.drkit"


class RecordingStore(MemoryStore):
    """Remembers the bytes a put received before its stream failed."""

    def __init__(self) -> None:
        super().__init__()
        self.received = bytearray()

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        def recording() -> Iterable[bytes]:
            for chunk in chunks:
                self.received += chunk
                yield chunk

        return super().put(key, recording())


def test_put_fails_after_exactly_the_given_number_of_bytes() -> None:
    inner = RecordingStore()
    store = FaultyStore(inner, fail_put_after_bytes=25)

    with pytest.raises(StoreUnavailable, match="connection reset"):
        store.put(KEY, [b"a" * 10, b"b" * 10, b"c" * 10])

    assert bytes(inner.received) == b"a" * 10 + b"b" * 10 + b"c" * 5
    assert inner.list() == []


def test_put_of_a_stream_shorter_than_the_limit_succeeds() -> None:
    store = FaultyStore(MemoryStore(), fail_put_after_bytes=100)

    assert store.put(KEY, [b"short"]) == 5


def test_the_injected_error_can_be_a_full_disk() -> None:
    store = FaultyStore(MemoryStore(), fail_put_after_bytes=0, error=disk_full())

    with pytest.raises(StoreFull, match="No space left"):
        store.put(KEY, [b"x"])


def test_get_flips_one_bit_at_the_given_offset() -> None:
    inner = MemoryStore()
    data = bytes(200_000)
    inner.put(KEY, [data])
    store = FaultyStore(inner, corrupt_get_byte_at=150_000)

    damaged = b"".join(store.get(KEY))

    assert len(damaged) == len(data)
    assert [i for i, (a, b) in enumerate(zip(damaged, data, strict=True)) if a != b] == [150_000]
    assert damaged[150_000] == 1


def test_get_breaks_off_after_the_given_number_of_bytes() -> None:
    inner = MemoryStore()
    inner.put(KEY, [bytes(100_000)])
    store = FaultyStore(inner, fail_get_after_bytes=1000)
    received = bytearray()

    with pytest.raises(StoreUnavailable):
        for chunk in store.get(KEY):
            received += chunk

    assert len(received) == 1000


def test_get_can_fail_before_the_first_chunk() -> None:
    inner = MemoryStore()
    inner.put(KEY, [b"data"])

    with pytest.raises(StoreUnavailable):
        FaultyStore(inner, fail_get_after_bytes=0).get(KEY)


def test_fail_next_fails_that_many_calls_then_passes_through() -> None:
    store = FaultyStore(MemoryStore(), fail_next={"list": 2})

    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            store.list()
    assert store.list() == []
    assert store.calls["list"] == 3


def test_unknown_operations_are_refused() -> None:
    with pytest.raises(ValueError, match="upload"):
        FaultyStore(MemoryStore(), fail_next={"upload": 1})
