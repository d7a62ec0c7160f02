"""AWS KMS keys against moto's server (real HTTP), and failing over when KMS is unreachable."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Sequence

import boto3
import pytest

from drkit.crypto import (
    AwsKmsKek,
    KeyEncryptionKey,
    KeyfileKek,
    decrypt_chunks,
    encrypt_chunks,
    keys_from_plan,
    read_header,
)
from drkit.errors import KeyUnavailableError
from drkit.plan.schema import AwsKmsKey

pytestmark = pytest.mark.s3

CONTEXT = "drkit:orders:20261127T153000.000Z-3fa2c1:orders-db"
PLAINTEXT = b"CREATE TABLE orders (id int);\n" * 500


@pytest.fixture
def kms_alias(s3_server: str) -> tuple[str, str]:
    """A fresh KMS key with an alias on moto's server; returns (alias, key ARN)."""
    kms = boto3.client("kms", endpoint_url=s3_server, region_name="us-east-1")
    arn = kms.create_key(Description="drkit test")["KeyMetadata"]["Arn"]
    alias = f"alias/drkit-test-{secrets.token_hex(4)}"
    kms.create_alias(AliasName=alias, TargetKeyId=arn)
    return alias, arn


def closed_port_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def seal(keys: Sequence[KeyEncryptionKey]) -> bytes:
    return b"".join(encrypt_chunks([PLAINTEXT], keys, CONTEXT, chunk_size=1000))


def test_kms_round_trip_through_an_alias(s3_server: str, kms_alias: tuple[str, str]) -> None:
    alias, arn = kms_alias
    spec = AwsKmsKey(
        name="kms-east", type="aws-kms", key_id=alias, region="us-east-1", endpoint_url=s3_server
    )
    artifact = seal(keys_from_plan([spec]))
    (recipient,) = read_header(artifact).recipients
    assert (recipient["type"], recipient["key_id"], recipient["region"]) == (
        "aws-kms",
        arn,
        "us-east-1",
    )
    fresh = keys_from_plan([spec])
    assert b"".join(decrypt_chunks([artifact], fresh, CONTEXT)) == PLAINTEXT


def test_kms_refuses_a_key_other_than_the_configured_one(
    s3_server: str, kms_alias: tuple[str, str]
) -> None:
    alias, _ = kms_alias
    artifact = seal([AwsKmsKek("kms-east", alias, "us-east-1", s3_server)])
    kms = boto3.client("kms", endpoint_url=s3_server, region_name="us-east-1")
    other = kms.create_key()["KeyMetadata"]["Arn"]
    with pytest.raises(KeyUnavailableError, match="key 'kms-east': KMS Decrypt with"):
        b"".join(
            decrypt_chunks(
                [artifact], [AwsKmsKek("kms-east", other, "us-east-1", s3_server)], CONTEXT
            )
        )


def test_unknown_kms_key_fails_encryption_with_one_line(s3_server: str) -> None:
    key = AwsKmsKek("kms-east", "alias/drkit-does-not-exist", "us-east-1", s3_server)
    with pytest.raises(KeyUnavailableError, match="NotFoundException") as caught:
        seal([key])
    assert "\n" not in caught.value.message
    assert "key_id and region" in caught.value.hint


def test_unreachable_kms_is_skipped_for_a_working_keyfile(
    s3_server: str, kms_alias: tuple[str, str], keyfile_key: KeyfileKek
) -> None:
    alias, _ = kms_alias
    artifact = seal([AwsKmsKek("kms-east", alias, "us-east-1", s3_server), keyfile_key])
    unreachable = AwsKmsKek("kms-east", alias, "us-east-1", closed_port_endpoint())
    assert b"".join(decrypt_chunks([artifact], [unreachable, keyfile_key], CONTEXT)) == PLAINTEXT


def test_unreachable_kms_alone_is_a_key_error_naming_the_key(
    s3_server: str, kms_alias: tuple[str, str]
) -> None:
    alias, _ = kms_alias
    artifact = seal([AwsKmsKek("kms-east", alias, "us-east-1", s3_server)])
    endpoint = closed_port_endpoint()
    started = time.monotonic()
    with pytest.raises(
        KeyUnavailableError, match=f"key 'kms-east': AWS KMS at {endpoint} is unreachable"
    ):
        b"".join(
            decrypt_chunks(
                [artifact], [AwsKmsKek("kms-east", alias, "us-east-1", endpoint)], CONTEXT
            )
        )
    print(f"unreachable KMS reported after {time.monotonic() - started:.1f}s")
