"""A Store in an S3 bucket: AWS or any S3-compatible provider (``endpoint_url``). The only
module that imports boto3.

``put`` streams: parts of 8 MiB (doubling every 1,000 parts, so the 10,000-part limit allows
objects of several TB) go out as a multipart upload while at most one part plus the incoming
chunk is held in memory; an object that fits in one part is a single PutObject. When the
stream raises or a part fails, the upload is aborted so no parts are left behind (a bucket
lifecycle rule AbortIncompleteMultipartUpload catches what a killed process cannot abort).
``get`` of an object larger than ``RANGED_READ_THRESHOLD`` reads its first ``RANGE_SIZE``
bytes from the streaming GET and the rest as ranged GETs, ``read_connections`` in flight (a
single connection rarely fills a link to S3), each pinned to the first GET's ETag, yielded in
order; memory holds at most that many ranges. Smaller objects, and ``read_connections: 1``,
use the one streaming GET. With ``object_lock`` set, every object is written with Object
Lock retention (mode, now + days); the bucket must have Object Lock enabled. Credentials come
from the plan's references or, without them, from the default AWS credential chain; they never
appear in messages or ``repr``.
"""

from __future__ import annotations

import builtins
import secrets
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from drkit.errors import ObjectNotFound, PlanError, StoreError, StoreUnavailable
from drkit.plan.schema import S3Store as S3Spec
from drkit.stores import check_key
from drkit.stores.base import Abilities

PART_SIZE = 8 * 1024 * 1024
PARTS_PER_SIZE_STEP = 1000
CHUNK_SIZE = 1024 * 1024
#: ranged reads: the size of each range, and the object size from which they are used
RANGE_SIZE = 4 * 1024 * 1024
RANGED_READ_THRESHOLD = 16 * 1024 * 1024
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "403",
    }
)
NO_OBJECT_LOCK_CODES = frozenset(
    {"ObjectLockConfigurationNotFoundError", "NotImplemented", "MethodNotAllowed"}
)
BUCKET_HINT = "check the bucket name, region and endpoint_url in the plan"
#: what a failing request can raise besides ClientError (sockets, truncated bodies, timeouts)
TRANSPORT_ERRORS = (BotoCoreError, OSError)


def part_size(part_number: int) -> int:
    """Size of multipart part ``part_number`` (1-based)."""
    return PART_SIZE << ((part_number - 1) // PARTS_PER_SIZE_STEP)


class S3Store:
    """Objects in ``bucket`` under ``prefix`` (a ``/`` is added to a non-empty prefix)."""

    wants_plaintext = False

    def __init__(
        self,
        spec: S3Spec,
        *,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        max_attempts: int = 3,
    ):
        if (spec.access_key_id is None) != (spec.secret_access_key is None):
            raise PlanError(
                f"store {spec.name}: give both access_key_id and secret_access_key, "
                "or neither (default AWS credential chain)"
            )
        self.name = spec.name
        self.region = spec.region
        self.bucket = spec.bucket
        self.prefix = spec.prefix.rstrip("/") + "/" if spec.prefix else ""
        self.spec = spec
        self._config = Config(
            region_name=spec.region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        )
        self._client_lock = threading.Lock()
        self._client_instance: Any = None

    def __repr__(self) -> str:
        return f"S3Store({self.describe()})"

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix} ({self.region})"
        if self.spec.endpoint_url:
            parts = urlsplit(self.spec.endpoint_url)
            where += f" at {parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return where

    # --- Store ---------------------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        object_key = self._object_key(key)
        buffer = bytearray()
        upload: MultipartUpload | None = None
        size = 0
        try:
            for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                # send only when more than a part is buffered: the tail is never empty
                while len(buffer) > part_size(upload.next_number if upload else 1):
                    if upload is None:
                        upload = self._start_upload(key, object_key)
                    limit = part_size(upload.next_number)
                    with memoryview(buffer) as view:
                        part = bytes(view[:limit])  # the one copy; the view ends before del
                    del buffer[:limit]
                    upload.send(part)
            if upload is None:
                with self._translating("write", key):
                    self._client().put_object(
                        Bucket=self.bucket,
                        Key=object_key,
                        Body=bytes(buffer),
                        **self._write_arguments(),
                    )
            else:
                upload.send(bytes(buffer))
                upload.complete()
                upload = None  # complete: nothing to abort from here on
                self._ensure_retention(key)
        except BaseException:
            if upload is not None:
                upload.abort()
            raise
        return size

    def get(self, key: str) -> Iterator[bytes]:
        object_key = self._object_key(key)
        with self._translating("read", key):
            response = self._client().get_object(Bucket=self.bucket, Key=object_key)
        size = int(response.get("ContentLength") or 0)
        if self.spec.read_connections > 1 and size > RANGED_READ_THRESHOLD:
            return self._ranged(response, key, object_key, size)
        return self._stream(response["Body"], key)

    def _ranged(
        self, response: dict[str, Any], key: str, object_key: str, size: int
    ) -> Iterator[bytes]:
        """The first range from the open GET, the others by ranged GETs in parallel, in order."""
        body = response["Body"]
        pinned = {"IfMatch": response["ETag"]} if response.get("ETag") else {}

        def fetch(start: int) -> bytes:
            last = min(start + RANGE_SIZE, size) - 1
            with self._translating("read", key):
                part = self._client().get_object(
                    Bucket=self.bucket, Key=object_key, Range=f"bytes={start}-{last}", **pinned
                )
                data: bytes = part["Body"].read()
            if len(data) != last - start + 1:
                raise StoreUnavailable(f"s3 store {self.name}: a ranged read of {key} came short")
            return data

        starts = iter(range(RANGE_SIZE, size, RANGE_SIZE))
        with ThreadPoolExecutor(self.spec.read_connections, f"s3-read-{self.name}") as pool:
            pending: deque[Future[bytes]] = deque(
                pool.submit(fetch, start) for start in islice(starts, self.spec.read_connections)
            )
            try:
                remaining = RANGE_SIZE
                with self._translating("read", key):
                    for chunk in body.iter_chunks(CHUNK_SIZE):
                        yield chunk[:remaining]
                        remaining -= len(chunk)
                        if remaining <= 0:
                            break
            finally:
                body.close()
            if remaining > 0:
                raise StoreUnavailable(f"s3 store {self.name}: the read of {key} came short")
            try:
                while pending:
                    data = pending.popleft().result()
                    pending.extend(pool.submit(fetch, start) for start in islice(starts, 1))
                    for offset in range(0, len(data), CHUNK_SIZE):
                        yield data[offset : offset + CHUNK_SIZE]
            finally:
                for future in pending:
                    future.cancel()

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        with self._translating("delete", key):
            # with versioning (Object Lock) this adds a delete marker; locked versions remain
            self._client().delete_object(Bucket=self.bucket, Key=object_key)

    def list(self, prefix: str = "") -> builtins.list[str]:
        keys: builtins.list[str] = []
        with self._translating("list", prefix or "/"):
            paginator = self._client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        return sorted(keys)

    def probe(self) -> str:
        """The bucket answers; a probe object is written, read back and removed (by version,
        so a versioned bucket keeps no delete marker). A bucket with Object Lock would keep
        any probe object, so there only a listing is probed."""
        self._check_bucket()
        if self._has_object_lock():
            with self._translating("list", "/"):
                self._client().list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
            return "reachable and listable; writing not probed (Object Lock would keep a probe)"
        object_key = f"{self.prefix}.drkit-probe-{secrets.token_hex(8)}"
        payload = secrets.token_bytes(64)
        with self._translating("write", "a probe object"):
            written = self._client().put_object(Bucket=self.bucket, Key=object_key, Body=payload)
        try:
            with self._translating("read", "a probe object"):
                response = self._client().get_object(Bucket=self.bucket, Key=object_key)
                is_intact = response["Body"].read() == payload
        finally:
            version = {"VersionId": written["VersionId"]} if written.get("VersionId") else {}
            with self._translating("delete", "a probe object"):
                self._client().delete_object(Bucket=self.bucket, Key=object_key, **version)
        if not is_intact:
            raise StoreUnavailable(f"s3 store {self.name}: a probe object read back wrong")
        return "reachable and writable (a probe object was written, read back and removed)"

    def _has_object_lock(self) -> bool:
        """True when the plan or the bucket sets Object Lock (or the bucket will not say)."""
        if self.spec.object_lock is not None:
            return True
        try:
            response = self._client().get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as error:
            # providers without Object Lock answer NotImplemented; a bucket without it, this
            return error_code(error) not in NO_OBJECT_LOCK_CODES
        except TRANSPORT_ERRORS as error:
            raise self._error(error, "reach", "the bucket") from None
        configuration = response.get("ObjectLockConfiguration", {})
        return bool(configuration.get("ObjectLockEnabled") == "Enabled")

    # --- Object Lock ---------------------------------------------------------------------

    def abilities(self) -> Abilities:
        return Abilities(lock_status=self, prober=self)

    def lock_status(self, key: str) -> tuple[str | None, datetime | None]:
        """The Object Lock retention of ``key``: (mode, retain-until), or (None, None).

        Read from HeadObject, which reports retention to callers allowed to see it (and
        unlike GetObjectRetention, S3-compatible servers and moto implement it)."""
        response = self._head(key)
        return response.get("ObjectLockMode"), response.get("ObjectLockRetainUntilDate")

    # --- helpers -------------------------------------------------------------------------

    def _client(self) -> Any:
        """The boto3 client, made on first use so a missing secret fails this store only."""
        with self._client_lock:
            if self._client_instance is None:
                spec = self.spec
                credentials: dict[str, str] = {}
                if spec.access_key_id and spec.secret_access_key:
                    credentials = {
                        "aws_access_key_id": _resolve(spec.access_key_id),
                        "aws_secret_access_key": _resolve(spec.secret_access_key),
                    }
                session = boto3.session.Session(**credentials)
                self._client_instance = session.client(
                    "s3", endpoint_url=spec.endpoint_url, config=self._config
                )
            return self._client_instance

    def _head(self, key: str) -> dict[str, Any]:
        object_key = self._object_key(key)
        try:
            response: dict[str, Any] = self._client().head_object(
                Bucket=self.bucket, Key=object_key
            )
        except ClientError as error:
            if error_code(error) in NOT_FOUND_CODES:
                self._check_bucket()  # HEAD says 404 for a missing bucket as well
            raise self._error(error, "read", key) from None
        except TRANSPORT_ERRORS as error:
            raise self._error(error, "read", key) from None
        return response

    def _object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _write_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        if self.spec.storage_class:
            arguments["StorageClass"] = self.spec.storage_class
        lock = self.spec.object_lock
        if lock is not None:
            arguments["ObjectLockMode"] = lock.mode
            arguments["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=lock.days)
        return arguments

    def _ensure_retention(self, key: str) -> None:
        """Set Object Lock retention on a multipart object where the server ignored it on
        CreateMultipartUpload (some S3-compatible servers do); AWS applies it there."""
        lock = self.spec.object_lock
        if lock is None or self.lock_status(key)[0] is not None:
            return
        with self._translating("lock", key):
            self._client().put_object_retention(
                Bucket=self.bucket,
                Key=self._object_key(key),
                Retention={
                    "Mode": lock.mode,
                    "RetainUntilDate": datetime.now(UTC) + timedelta(days=lock.days),
                },
            )

    def _start_upload(self, key: str, object_key: str) -> MultipartUpload:
        with self._translating("write", key):
            response = self._client().create_multipart_upload(
                Bucket=self.bucket, Key=object_key, **self._write_arguments()
            )
        return MultipartUpload(self, key, object_key, response["UploadId"])

    def _stream(self, body: Any, key: str) -> Iterator[bytes]:
        try:
            with self._translating("read", key):
                yield from body.iter_chunks(CHUNK_SIZE)
        finally:
            body.close()

    def _check_bucket(self) -> None:
        """Raise StoreUnavailable when the bucket is missing or unreachable."""
        try:
            self._client().head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error_code(error) in NOT_FOUND_CODES | {"NoSuchBucket"}:
                raise StoreUnavailable(
                    f"s3 store {self.name}: bucket {self.bucket} does not exist", hint=BUCKET_HINT
                ) from None
            raise self._error(error, "reach", "the bucket") from None
        except TRANSPORT_ERRORS as error:
            raise self._error(error, "reach", "the bucket") from None

    def _error(self, error: Exception, action: str, key: str) -> StoreError:
        where = f"s3 store {self.name}: cannot {action} {key} in bucket {self.bucket}"
        if isinstance(error, ClientError):
            code = error_code(error)
            if code in NOT_FOUND_CODES:
                return ObjectNotFound(
                    f"s3 store {self.name}: no object {key} in bucket {self.bucket}"
                )
            if code == "NoSuchBucket":
                return StoreUnavailable(f"{where}: the bucket does not exist", hint=BUCKET_HINT)
            if code in ACCESS_CODES:
                return StoreUnavailable(
                    f"{where}: access denied ({code})",
                    hint="check the store's credentials and bucket policy",
                )
            return StoreUnavailable(f"{where}: {code}: {error_message(error)}")
        if isinstance(error, NoCredentialsError | PartialCredentialsError):
            return StoreUnavailable(
                f"{where}: no AWS credentials found",
                hint="set access_key_id/secret_access_key in the plan, or "
                "configure the AWS credential chain",
            )
        if isinstance(error, ConnectionError):
            return StoreUnavailable(f"{where}: cannot connect: {first_line(error)}")
        return StoreUnavailable(f"{where}: {first_line(error)}")

    @contextmanager
    def _translating(self, action: str, key: str) -> Iterator[None]:
        """Turn boto3 and socket errors of the block into ObjectNotFound / StoreUnavailable."""
        try:
            yield
        except (ClientError, *TRANSPORT_ERRORS) as error:
            raise self._error(error, action, key) from None


class MultipartUpload:
    """One multipart upload in progress: sends parts, then completes or aborts."""

    def __init__(self, store: S3Store, key: str, object_key: str, upload_id: str):
        self.store = store
        self.key = key
        self.object_key = object_key
        self.upload_id = upload_id
        self.parts: list[dict[str, Any]] = []

    @property
    def next_number(self) -> int:
        return len(self.parts) + 1

    def send(self, data: bytes) -> None:
        number = self.next_number
        with self.store._translating("write", self.key):
            response = self.store._client().upload_part(
                Bucket=self.store.bucket,
                Key=self.object_key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        # boto3 adds a checksum to each part by default; completing must repeat it
        part.update(
            {
                name: value
                for name, value in response.items()
                if name.startswith("Checksum") and name != "ChecksumType"
            }
        )
        self.parts.append(part)

    def complete(self) -> None:
        with self.store._translating("write", self.key):
            self.store._client().complete_multipart_upload(
                Bucket=self.store.bucket,
                Key=self.object_key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )

    def abort(self) -> None:
        """Best effort: the caller's error matters more than a failed abort."""
        try:
            self.store._client().abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.object_key, UploadId=self.upload_id
            )
        except (ClientError, *TRANSPORT_ERRORS):
            pass


def _resolve(reference: str) -> str:
    from drkit.secrets import SecretRef

    return SecretRef(reference).resolve().reveal()  # SDK boundary: the client keeps it


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def error_message(error: ClientError) -> str:
    message = str(error.response.get("Error", {}).get("Message", "")) or "no details"
    return message.splitlines()[0] if message.strip() else "no details"


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
