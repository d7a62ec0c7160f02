"""One contract for every key-encryption key type (key file, passphrase, AWS KMS on moto's
server): what ``KeyEncryptionKey`` promises in its docstrings, checked the same way for each.

- wrap then unwrap gives the data key back, for the same context only;
- a recipient entry holds no secret (not the data key, not the key material);
- a damaged entry is an IntegrityError; a different key of the same name is a
  KeyUnavailableError; so is a key that cannot be loaded or reached, naming the key and never
  the secret.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from drkit.crypto import AwsKmsKek, KeyEncryptionKey, KeyfileKek, PassphraseKek, generate_keyfile
from drkit.errors import IntegrityError, KeyUnavailableError
from drkit.secrets import SecretRef

CONTEXT = b"drkit:api:20261127T153000.000Z-3fa2c1:orders-db"


@dataclass
class KeyCase:
    key: KeyEncryptionKey
    #: another key of the same type and name (the wrong key file, the wrong passphrase)
    other: KeyEncryptionKey
    #: the same key, but it cannot be loaded or reached
    unloadable: KeyEncryptionKey
    #: what must never appear in a recipient entry or an error message
    secret: bytes


def _keyfile_case(request: pytest.FixtureRequest) -> KeyCase:
    tmp: Path = request.getfixturevalue("tmp_path")
    generate_keyfile(tmp / "right.key")
    generate_keyfile(tmp / "wrong.key")
    return KeyCase(
        KeyfileKek("primary", str(tmp / "right.key")),
        KeyfileKek("primary", str(tmp / "wrong.key")),
        KeyfileKek("primary", str(tmp / "missing.key")),
        (tmp / "right.key").read_bytes(),
    )


def _passphrase_case(request: pytest.FixtureRequest) -> KeyCase:
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("CONTRACT_RIGHT", "right horse battery staple")
    monkeypatch.setenv("CONTRACT_WRONG", "wrong horse battery staple")
    monkeypatch.delenv("CONTRACT_UNSET", raising=False)
    return KeyCase(
        PassphraseKek("break-glass", SecretRef("env:CONTRACT_RIGHT")),
        PassphraseKek("break-glass", SecretRef("env:CONTRACT_WRONG")),
        PassphraseKek("break-glass", SecretRef("env:CONTRACT_UNSET")),
        b"right horse battery staple",
    )


def _kms_case(request: pytest.FixtureRequest) -> KeyCase:
    import boto3

    endpoint: str = request.getfixturevalue("s3_server")
    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
    right = kms.create_key(Description="contract right")["KeyMetadata"]["Arn"]
    wrong = kms.create_key(Description="contract wrong")["KeyMetadata"]["Arn"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    return KeyCase(
        AwsKmsKek("kms", right, "us-east-1", endpoint),
        AwsKmsKek("kms", wrong, "us-east-1", endpoint),
        AwsKmsKek("kms", right, "us-east-1", closed),
        os.environ.get("AWS_SECRET_ACCESS_KEY", "testing").encode(),
    )


CASES: dict[str, Callable[[pytest.FixtureRequest], KeyCase]] = {
    "keyfile": _keyfile_case,
    "passphrase": _passphrase_case,
    "aws-kms": _kms_case,
}


@pytest.fixture(
    params=[
        pytest.param(kind, marks=[pytest.mark.s3] if kind == "aws-kms" else []) for kind in CASES
    ]
)
def key_case(request: pytest.FixtureRequest) -> KeyCase:
    return CASES[request.param](request)


def test_wrap_then_unwrap_gives_the_data_key_back(key_case: KeyCase) -> None:
    data_key = secrets.token_bytes(32)
    recipient = key_case.key.wrap(data_key, CONTEXT)
    assert (recipient["name"], recipient["type"]) == (key_case.key.name, key_case.key.type)
    assert key_case.key.unwrap(recipient, CONTEXT) == data_key


def test_a_recipient_entry_holds_no_secret(key_case: KeyCase) -> None:
    data_key = secrets.token_bytes(32)
    text = json.dumps(key_case.key.wrap(data_key, CONTEXT)).encode()
    for secret in (data_key, key_case.secret):
        assert secret not in text
        assert base64.b64encode(secret) not in text


def test_another_context_fails_authentication(key_case: KeyCase) -> None:
    recipient = key_case.key.wrap(secrets.token_bytes(32), CONTEXT)
    with pytest.raises(IntegrityError):
        key_case.key.unwrap(recipient, CONTEXT.replace(b"orders-db", b"ledger-db"))


def test_a_damaged_entry_is_an_integrity_error(key_case: KeyCase) -> None:
    recipient = key_case.key.wrap(secrets.token_bytes(32), CONTEXT)
    wrapped = bytearray(base64.b64decode(recipient["wrapped_key"]))
    wrapped[len(wrapped) // 2] ^= 0x01
    damaged = recipient | {"wrapped_key": base64.b64encode(bytes(wrapped)).decode()}
    with pytest.raises(IntegrityError):
        key_case.key.unwrap(damaged, CONTEXT)


def test_a_different_key_of_the_same_name_is_a_key_error(key_case: KeyCase) -> None:
    recipient = key_case.key.wrap(secrets.token_bytes(32), CONTEXT)
    with pytest.raises(KeyUnavailableError, match=repr(key_case.key.name)) as raised:
        key_case.other.unwrap(recipient, CONTEXT)
    assert key_case.secret.decode("latin-1") not in raised.value.message


def test_a_key_that_cannot_be_loaded_is_a_key_error_naming_it(key_case: KeyCase) -> None:
    for attempt in (
        lambda: key_case.unloadable.wrap(secrets.token_bytes(32), CONTEXT),
        lambda: key_case.unloadable.unwrap(
            key_case.key.wrap(secrets.token_bytes(32), CONTEXT), CONTEXT
        ),
    ):
        with pytest.raises(KeyUnavailableError, match=repr(key_case.key.name)) as raised:
            attempt()
        assert key_case.secret.decode("latin-1") not in raised.value.message
