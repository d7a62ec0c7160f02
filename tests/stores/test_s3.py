"""The S3 store beyond the shared contract, against moto's server: multipart uploads and their
cleanup, ranged parallel reads (on small objects: moto serves ranges slowly), Object Lock,
storage class, credentials and error messages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from drkit.errors import ObjectNotFound, PlanError, StoreError, StoreUnavailable
from drkit.plan.schema import S3Store as S3Spec
from drkit.stores import s3 as s3_module
from drkit.stores.s3 import PART_SIZE, S3Store, part_size

pytestmark = pytest.mark.s3
KEY = "orders/snapshots/20260101T000000Z-abc123/orders-db.drkit"
MiB = 1024 * 1024


class StreamBroke(Exception):
    pass


def make_spec(endpoint: str, bucket: str, **fields: Any) -> S3Spec:
    return S3Spec(
        name="use1", type="s3", bucket=bucket, region="us-east-1", endpoint_url=endpoint, **fields
    )


def raw_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def chunked(data: bytes, size: int = MiB) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


class CallRecorder:
    """Wraps a boto3 client, recording each operation and the size of each part sent."""

    def __init__(self, client: Any):
        self.client = client
        self.calls: list[str] = []
        self.part_sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name == "upload_part":
                self.part_sizes.append(len(kwargs["Body"]))
            return method(*args, **kwargs)

        return record


def recorded(store: S3Store) -> CallRecorder:
    recorder = CallRecorder(store._client())
    store._client_instance = recorder
    return recorder


def test_an_object_that_fits_in_one_part_is_a_single_put(s3_server: str, s3_bucket: str) -> None:
    store = S3Store(make_spec(s3_server, s3_bucket))
    recorder = recorded(store)

    store.put(KEY, chunked(os.urandom(PART_SIZE)))

    assert recorder.calls == ["put_object"]
    assert store.size(KEY) == PART_SIZE


def test_a_larger_object_streams_as_parts_of_bounded_size(s3_server: str, s3_bucket: str) -> None:
    store = S3Store(make_spec(s3_server, s3_bucket))
    recorder = recorded(store)
    data = os.urandom(PART_SIZE + 3 * MiB)

    store.put(KEY, chunked(data, 3 * MiB))

    assert recorder.calls == [
        "create_multipart_upload",
        "upload_part",
        "upload_part",
        "complete_multipart_upload",
    ]
    assert recorder.part_sizes == [PART_SIZE, 3 * MiB]
    assert b"".join(store.get(KEY)) == data


def test_part_size_doubles_every_thousand_parts() -> None:
    assert [part_size(n) for n in (1, 1000, 1001, 2001)] == [
        PART_SIZE,
        PART_SIZE,
        2 * PART_SIZE,
        4 * PART_SIZE,
    ]


def test_a_stream_failing_after_parts_aborts_the_multipart_upload(
    s3_server: str, s3_bucket: str
) -> None:
    store = S3Store(make_spec(s3_server, s3_bucket))

    def breaking() -> Iterator[bytes]:
        yield from chunked(os.urandom(PART_SIZE + 2 * MiB))
        raise StreamBroke

    with pytest.raises(StreamBroke):
        store.put(KEY, breaking())

    assert raw_client(s3_server).list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert store.list() == []


def test_a_failing_part_aborts_the_upload_and_raises_store_unavailable(
    s3_server: str, s3_bucket: str
) -> None:
    store = S3Store(make_spec(s3_server, s3_bucket), max_attempts=1)
    recorder = recorded(store)
    real_upload_part = recorder.client.upload_part
    sent: list[int] = []

    def flaky_upload_part(**kwargs: Any) -> Any:
        sent.append(kwargs["PartNumber"])
        if kwargs["PartNumber"] == 2:
            kwargs["UploadId"] = "no-such-upload"  # the server refuses this part
        return real_upload_part(**kwargs)

    recorder.client.upload_part = flaky_upload_part

    with pytest.raises(StoreUnavailable, match=f"use1: cannot write .* in bucket {s3_bucket}"):
        store.put(KEY, chunked(os.urandom(2 * PART_SIZE + 1)))

    assert sent == [1, 2]
    assert raw_client(s3_server).list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert store.list() == []


@pytest.mark.parametrize("size", [10, PART_SIZE + 1], ids=["single-put", "multipart"])
def test_object_lock_sets_retention_on_every_object(s3_server: str, size: int) -> None:
    bucket = f"drkit-locked-{os.urandom(3).hex()}"
    raw_client(s3_server).create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = S3Store(make_spec(s3_server, bucket, object_lock={"mode": "GOVERNANCE", "days": 30}))

    store.put(KEY, chunked(os.urandom(size)))
    mode, until = store.lock_status(KEY)

    assert mode == "GOVERNANCE"
    assert until is not None
    expected = datetime.now(UTC) + timedelta(days=30)
    assert abs((until - expected).total_seconds()) < 600


def test_lock_status_without_object_lock_is_none(s3_server: str, s3_bucket: str) -> None:
    store = S3Store(make_spec(s3_server, s3_bucket))
    store.put(KEY, [b"data"])

    assert store.lock_status(KEY) == (None, None)
    with pytest.raises(ObjectNotFound):
        store.lock_status("orders/missing")


def test_storage_class_and_prefix_apply_to_stored_objects(s3_server: str, s3_bucket: str) -> None:
    store = S3Store(make_spec(s3_server, s3_bucket, prefix="payments", storage_class="STANDARD_IA"))

    store.put(KEY, [b"data"])

    head = raw_client(s3_server).head_object(Bucket=s3_bucket, Key=f"payments/{KEY}")
    assert head["StorageClass"] == "STANDARD_IA"
    assert store.list() == [KEY]
    assert (
        store.describe()
        == f"s3://{s3_bucket}/payments/ (us-east-1) at 127.0.0.1:" + s3_server.rsplit(":", 1)[1]
    )


def test_credentials_come_from_the_plan_references_and_stay_hidden(
    s3_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USE1_KEY_ID", "AKIDFROMPLAN")
    monkeypatch.setenv("USE1_SECRET", "very-secret-value")
    store = S3Store(
        make_spec(
            s3_server,
            s3_bucket,
            access_key_id="env:USE1_KEY_ID",
            secret_access_key="env:USE1_SECRET",
        )
    )

    store.put(KEY, [b"data"])

    credentials = store._client()._request_signer._credentials.get_frozen_credentials()
    assert (credentials.access_key, credentials.secret_key) == ("AKIDFROMPLAN", "very-secret-value")
    assert "very-secret-value" not in repr(store) + store.describe()


def test_half_given_credentials_are_a_plan_error(s3_server: str, s3_bucket: str) -> None:
    with pytest.raises(PlanError, match="both access_key_id and secret_access_key"):
        S3Store(make_spec(s3_server, s3_bucket, access_key_id="env:USE1_KEY_ID"))


def test_a_missing_bucket_is_unavailable_with_a_message_naming_it(s3_server: str) -> None:
    store = S3Store(make_spec(s3_server, "drkit-no-such-bucket"))

    for attempt in (
        lambda: store.size(KEY),
        lambda: store.list(),
        lambda: store.put(KEY, [b"x"]),
        lambda: b"".join(store.get(KEY)),
    ):
        with pytest.raises(StoreUnavailable, match=r"drkit-no-such-bucket.*does not exist"):
            attempt()


def test_an_unreachable_endpoint_names_store_and_bucket(s3_bucket: str) -> None:
    from .conftest import closed_port

    store = S3Store(make_spec(f"http://127.0.0.1:{closed_port()}", s3_bucket), max_attempts=1)

    with pytest.raises(StoreUnavailable) as raised:
        store.list()

    assert f"s3 store use1: cannot list / in bucket {s3_bucket}: cannot connect" in str(
        raised.value
    )


class RangeRecorder(CallRecorder):
    """Also records the Range and IfMatch of each GET (from several threads)."""

    def __init__(self, client: Any):
        super().__init__(client)
        self.gets: list[tuple[str | None, str | None]] = []

    def __getattr__(self, name: str) -> Any:
        method = super().__getattr__(name)
        if name != "get_object":
            return method

        def record(**kwargs: Any) -> Any:
            self.gets.append((kwargs.get("Range"), kwargs.get("IfMatch")))
            return method(**kwargs)

        return record


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> int:
    """Ranges of 64 KiB from 128 KiB on: the ranged path on objects moto serves quickly."""
    monkeypatch.setattr(s3_module, "RANGE_SIZE", 64 * 1024)
    monkeypatch.setattr(s3_module, "RANGED_READ_THRESHOLD", 128 * 1024)
    return 64 * 1024


@pytest.mark.parametrize("connections", [2, 4])
def test_a_large_object_is_read_by_ranged_gets_in_parallel_and_in_order(
    s3_server: str, s3_bucket: str, small_ranges: int, connections: int
) -> None:
    store = S3Store(make_spec(s3_server, s3_bucket, read_connections=connections))
    data = os.urandom(MiB + 12_345)
    store.put(KEY, chunked(data))
    recorder = RangeRecorder(store._client())
    store._client_instance = recorder

    assert b"".join(store.get(KEY)) == data

    first, *ranged = recorder.gets
    assert first == (None, None)  # the streaming GET gives the first range and the ETag
    starts = sorted(int(r.removeprefix("bytes=").split("-")[0]) for r, _ in ranged if r)
    assert starts == list(range(small_ranges, len(data), small_ranges))
    assert all(etag for _, etag in ranged)


def test_one_read_connection_reads_a_large_object_with_one_streaming_get(
    s3_server: str, s3_bucket: str, small_ranges: int
) -> None:
    store = S3Store(make_spec(s3_server, s3_bucket, read_connections=1))
    data = os.urandom(MiB)
    store.put(KEY, chunked(data))
    recorder = RangeRecorder(store._client())
    store._client_instance = recorder

    assert b"".join(store.get(KEY)) == data
    assert recorder.gets == [(None, None)]


def test_an_object_replaced_during_a_ranged_read_fails_rather_than_mixing_versions(
    s3_server: str, s3_bucket: str, small_ranges: int
) -> None:
    store = S3Store(make_spec(s3_server, s3_bucket, read_connections=2))
    store.put(KEY, chunked(b"a" * MiB))
    chunks = store.get(KEY)
    next(chunks)
    store.put(KEY, chunked(b"b" * MiB))

    with pytest.raises(StoreError):
        b"".join(chunks)
