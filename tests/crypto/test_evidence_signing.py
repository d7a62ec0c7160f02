"""Evidence signers: an AWS KMS asymmetric key (ECC_NIST_P256, on moto's KMS server over HTTP)
signs a chain that verifies offline with the PEM of its public key alone, and a tampered record
of it fails; an unusable signing key file is a one-line key error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drkit.crypto.evidence import GENESIS, seal_record, verify_chain
from drkit.crypto.kms import AwsKmsSigner
from drkit.crypto.signing import Ed25519FileSigner, PublicKey
from drkit.errors import KeyUnavailableError


def make_chain(signer: AwsKmsSigner | Ed25519FileSigner, count: int) -> list[str]:
    lines, prev = [], GENESIS
    for seq in range(1, count + 1):
        line, prev = seal_record(
            "api", seq, prev, f"2026-12-07T00:0{seq}:00+00:00", {"kind": "backup"}, signer
        )
        lines.append(line)
    return lines


def test_a_kms_signed_chain_verifies_with_the_kms_public_key_alone(s3_server: str) -> None:
    import boto3
    from cryptography.hazmat.primitives import serialization

    kms = boto3.client("kms", endpoint_url=s3_server, region_name="us-east-1")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    signer = AwsKmsSigner(key, "us-east-1", s3_server)
    lines = make_chain(signer, 3)
    der = kms.get_public_key(KeyId=key)["PublicKey"]
    pem = serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = PublicKey(pem)
    assert public.algorithm == "ecdsa-p256-sha256"
    check = verify_chain(lines, public)
    assert check.ok and check.count == 3, check.problems
    record = json.loads(lines[1])
    record["event"]["kind"] = "drill"
    tampered = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert not verify_chain([lines[0], tampered, lines[2]], public).ok


def test_a_signing_key_file_that_is_not_an_ed25519_key_is_a_key_error(tmp_path: Path) -> None:
    path = tmp_path / "not-a-key"
    path.write_text("hello\n")
    with pytest.raises(KeyUnavailableError, match="not an unencrypted Ed25519"):
        Ed25519FileSigner(f"file:{path}").key_id()
