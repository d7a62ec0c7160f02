"""The retrying wrapper: what it retries, how long it waits, when it gives up."""

from __future__ import annotations

import logging

import pytest

from drkit.errors import IntegrityError, ObjectNotFound, StoreError, StoreFull, StoreUnavailable
from drkit.stores.faults import FaultyStore
from drkit.stores.memory import MemoryStore
from drkit.stores.retry import RetryingStore

KEY = "orders/snapshots/20260101T000000Z-abc123/orders-db.drkit"


def make(
    fail_next: dict[str, int], *, error: StoreError | None = None, attempts: int = 4
) -> tuple[RetryingStore, FaultyStore, list[float]]:
    inner = MemoryStore()
    inner.put(KEY, [b"0123456789" * 10_000])
    faulty = FaultyStore(inner, fail_next=fail_next, error=error)
    sleeps: list[float] = []
    store = RetryingStore(faulty, attempts=attempts, sleep=sleeps.append, jitter=lambda: 1.0)
    return store, faulty, sleeps


def test_list_is_retried_until_it_succeeds_with_growing_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, faulty, sleeps = make({"list": 2})

    with caplog.at_level(logging.WARNING, logger="drkit.stores.retry"):
        assert store.list() == [KEY]

    assert faulty.calls["list"] == 3
    assert sleeps == [0.5, 1.0]
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert all("\n" not in message and "connection reset" in message for message in messages)
    assert "retry 1 of 3" in messages[0]


def test_size_and_delete_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    store, faulty, _ = make({"size": 1, "delete": 1})

    assert store.size(KEY) == 100_000
    store.delete(KEY)

    assert (faulty.calls["size"], faulty.calls["delete"]) == (2, 2)
    assert faulty.inner.list() == []


def test_gives_up_after_the_last_attempt_with_the_store_error() -> None:
    store, faulty, sleeps = make({"list": 100}, attempts=4)

    with pytest.raises(StoreUnavailable, match="connection reset"):
        store.list()

    assert faulty.calls["list"] == 4
    assert len(sleeps) == 3


@pytest.mark.parametrize(
    "error",
    [StoreFull("disk full"), ObjectNotFound("gone"), IntegrityError("bad")],
    ids=lambda error: type(error).__name__,
)
def test_errors_a_retry_cannot_fix_are_raised_at_once(error: StoreError) -> None:
    store, faulty, sleeps = make({"size": 1}, error=error)

    with pytest.raises(type(error)):
        store.size(KEY)

    assert faulty.calls["size"] == 1
    assert sleeps == []


def test_put_is_never_retried_because_its_stream_is_read_once() -> None:
    store, faulty, sleeps = make({"put": 1})

    with pytest.raises(StoreUnavailable):
        store.put("orders/new", iter([b"data"]))

    assert faulty.calls["put"] == 1
    assert sleeps == []


def test_get_is_retried_before_its_first_chunk() -> None:
    store, faulty, _ = make({"get": 2})

    assert b"".join(store.get(KEY)) == b"0123456789" * 10_000
    assert faulty.calls["get"] == 3


def test_get_is_not_retried_once_chunks_were_delivered() -> None:
    store, faulty, _ = make({})
    faulty.fail_get_after_bytes = 70_000
    received = bytearray()

    with pytest.raises(StoreUnavailable):
        for chunk in store.get(KEY):
            received += chunk

    assert len(received) == 70_000
    assert faulty.calls["get"] == 1


def test_get_of_an_empty_object_returns_nothing() -> None:
    store, faulty, _ = make({})
    faulty.inner.put("orders/empty", [])

    assert list(store.get("orders/empty")) == []


def test_waits_use_full_jitter_capped_at_max_delay() -> None:
    store = RetryingStore(MemoryStore(), base_delay=0.5, max_delay=8, jitter=lambda: 0.5)

    assert [store.delay(retry) for retry in (1, 2, 3, 5, 9)] == [0.25, 0.5, 1.0, 4.0, 4.0]
    assert RetryingStore(MemoryStore(), jitter=lambda: 0.0).delay(3) == 0.0


def test_the_wrapper_reports_the_inner_store_identity() -> None:
    inner = MemoryStore(name="vault", region="eu-west-1", wants_plaintext=True)
    store = RetryingStore(inner)

    assert (store.name, store.region, store.wants_plaintext) == ("vault", "eu-west-1", True)
    assert store.describe() == inner.describe()
    with pytest.raises(ValueError):
        RetryingStore(inner, attempts=0)
