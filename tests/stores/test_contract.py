"""The Store contract (drkit/stores/base.py), run over every implementation: memory,
filesystem, S3 on moto's server, restic on a local repository and restic on moto's S3."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from drkit.errors import ObjectNotFound, StoreUnavailable
from drkit.stores.base import Store

from .conftest import StoreCase

KEY = "orders/snapshots/20260101T000000Z-abc123/orders-db.drkit"
MANIFEST = "orders/snapshots/20260101T000000Z-abc123/manifest.json"


class StreamBroke(Exception):
    """Raised by a test's chunk iterator, as a failing database dump would."""


def chunked(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def breaking_after(data: bytes) -> Iterator[bytes]:
    yield from chunked(data)
    raise StreamBroke("the dump died")


def read(store: Store, key: str) -> bytes:
    return b"".join(store.get(key))


@pytest.mark.parametrize("shape", ["empty", "small", "multi-chunk"])
def test_put_then_get_returns_the_same_bytes(store_case: StoreCase, shape: str) -> None:
    store = store_case.store
    size = {"empty": 0, "small": 11, "multi-chunk": store_case.large_size}[shape]
    data = os.urandom(size)

    held = store.put(KEY, chunked(data))
    if store.wants_plaintext and size:
        # restic reports what its repository keeps: random data does not compress, so that
        # is the data plus its own encryption's overhead
        assert size <= held <= size * 1.01 + 4096
    else:
        assert held == size
    assert read(store, KEY) == data
    assert store.size(KEY) == size


def test_put_overwrites_an_existing_object(store_case: StoreCase) -> None:
    store = store_case.store
    store.put(KEY, [b"first version"])

    store.put(KEY, [b"second", b" version"])

    assert read(store, KEY) == b"second version"
    assert store.list() == [KEY]


def test_list_returns_keys_under_the_prefix_sorted(store_case: StoreCase) -> None:
    store = store_case.store
    for key in ("b/snapshots/2/x.drkit", "a/snapshots/2/y.drkit", "a/snapshots/1/z.drkit"):
        store.put(key, [key.encode()])

    assert store.list("a/") == ["a/snapshots/1/z.drkit", "a/snapshots/2/y.drkit"]
    assert store.list() == [
        "a/snapshots/1/z.drkit",
        "a/snapshots/2/y.drkit",
        "b/snapshots/2/x.drkit",
    ]
    assert store.list("a/snapshots/3") == []


def test_missing_key_raises_object_not_found_from_get_and_size(store_case: StoreCase) -> None:
    store = store_case.store
    store.put(MANIFEST, [b"{}"])  # the store exists and holds something else

    with pytest.raises(ObjectNotFound):
        read(store, KEY)
    with pytest.raises(ObjectNotFound):
        store.size(KEY)


def test_delete_removes_the_object_and_is_idempotent(store_case: StoreCase) -> None:
    store = store_case.store
    store.put(KEY, [b"data"])
    store.put(MANIFEST, [b"{}"])

    store.delete(KEY)
    store.delete(KEY)

    assert store.list() == [MANIFEST]
    with pytest.raises(ObjectNotFound):
        read(store, KEY)


def test_put_whose_chunks_raise_propagates_and_leaves_nothing(store_case: StoreCase) -> None:
    store = store_case.store

    with pytest.raises(StreamBroke):
        store.put(KEY, breaking_after(os.urandom(200_000)))

    assert store.list() == []
    with pytest.raises(ObjectNotFound):
        read(store, KEY)


def test_failed_overwrite_keeps_the_previous_object(store_case: StoreCase) -> None:
    store = store_case.store
    store.put(KEY, [b"good copy"])

    with pytest.raises(StreamBroke):
        store.put(KEY, breaking_after(b"half of a new copy"))

    assert read(store, KEY) == b"good copy"


def test_unreachable_store_raises_store_unavailable(store_case: StoreCase) -> None:
    store = store_case.unreachable
    attempts: dict[str, Callable[[], object]] = {
        "put": lambda: store.put(KEY, [b"data"]),
        "get": lambda: read(store, KEY),
        "size": lambda: store.size(KEY),
        "list": lambda: store.list(),
        "delete": lambda: store.delete(KEY),
    }
    for operation, attempt in attempts.items():
        with pytest.raises(StoreUnavailable) as raised:
            attempt()
        assert "\n" not in str(raised.value), operation


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../../b", "a//b", "./a", "a/"])
def test_invalid_keys_are_refused(store_case: StoreCase, key: str) -> None:
    store = store_case.store
    for attempt in (
        lambda: store.put(key, [b"x"]),
        lambda: read(store, key),
        lambda: store.size(key),
        lambda: store.delete(key),
    ):
        with pytest.raises(ValueError, match="invalid store key"):
            attempt()


def test_describe_names_the_store_without_secrets(store_case: StoreCase) -> None:
    from .conftest import AWS_SECRET, RESTIC_PASSWORD

    store = store_case.store
    description = store.describe()

    assert description and store.region in description
    assert RESTIC_PASSWORD not in description + repr(store)
    assert AWS_SECRET not in description + repr(store)
    assert isinstance(store, Store)
