"""Signing keys for evidence records: an Ed25519 key file, or an AWS KMS asymmetric key
(``drkit.crypto.kms.AwsKmsSigner``). A third party verifies with the public key alone.

What is signed is always a 32-byte message, the SHA-256 of a record's canonical form; Ed25519
signs it as is, ECDSA (KMS ``ECDSA_SHA_256``, MessageType RAW) hashes it once more. A key is
named by its *key id*, 16 hex digits of SHA-256 over the public key's DER (SubjectPublicKeyInfo),
so a record says which public key verifies it without revealing anything secret.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from drkit.errors import DrkitError, KeyUnavailableError, RefusedError, UsageError
from drkit.plan.schema import Evidence
from drkit.secrets import SecretRef

ED25519 = "ed25519"
ECDSA_P256 = "ecdsa-p256-sha256"


class EvidenceSigner(Protocol):
    """A private key that signs evidence records."""

    algorithm: str

    def key_id(self) -> str:
        """The public key's id (16 hex digits); KeyUnavailableError when it cannot be loaded."""
        ...

    def public_der(self) -> bytes:
        """The public key, DER SubjectPublicKeyInfo."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The signature of ``message``; KeyUnavailableError when the key cannot be used."""
        ...


def signer_for(settings: Evidence) -> EvidenceSigner:
    """The signer a plan's ``evidence:`` section names (nothing is loaded or contacted yet)."""
    if settings.kms is not None:
        from drkit.crypto.kms import AwsKmsSigner

        kms = settings.kms
        return AwsKmsSigner(kms.key_id, kms.region, kms.endpoint_url)
    assert settings.signing_key is not None  # the schema requires exactly one
    return Ed25519FileSigner(settings.signing_key)


def prove_signer(signer: EvidenceSigner) -> str:
    """Sign a test message and check the signature with the signer's own public key; its key
    id. KeyUnavailableError when the key cannot be loaded, reached or does not verify."""
    message = hashlib.sha256(b"drkit preflight: evidence signing").digest()
    signature = signer.sign(message)
    public = PublicKey(signer.public_der())
    if public.key_id != signer.key_id() or not public.is_signature_valid(message, signature):
        raise KeyUnavailableError("the evidence signing key's signature does not verify")
    return public.key_id


def public_key_id(public_der: bytes) -> str:
    """16 hex digits of SHA-256 over a public key's DER SubjectPublicKeyInfo."""
    return hashlib.sha256(public_der).hexdigest()[:16]


class Ed25519FileSigner:
    """An Ed25519 private key in PEM, from ``file:/path`` or ``env:NAME``, loaded on first use."""

    algorithm = ED25519

    def __init__(self, reference: str):
        self._reference = reference
        self._key: ed25519.Ed25519PrivateKey | None = None

    def _private(self) -> ed25519.Ed25519PrivateKey:
        if self._key is None:
            pem = SecretRef(self._reference).resolve().reveal().encode()
            try:
                key = serialization.load_pem_private_key(pem, password=None)
            except (ValueError, TypeError):
                key = None
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise KeyUnavailableError(
                    f"evidence signing key {self._reference} is not an unencrypted Ed25519 "
                    "private key in PEM",
                    hint="make one with `drkit keys generate --signing PATH`",
                )
            self._key = key
        return self._key

    def key_id(self) -> str:
        return public_key_id(self.public_der())

    def public_der(self) -> bytes:
        return public_der(self._private().public_key())

    def sign(self, message: bytes) -> bytes:
        return self._private().sign(message)


def public_der(key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class PublicKey:
    """A public key that checks evidence signatures (Ed25519, or ECDSA P-256 from KMS)."""

    def __init__(self, pem_or_der: bytes):
        try:
            if pem_or_der.lstrip().startswith(b"-----"):
                key = serialization.load_pem_public_key(pem_or_der)
            else:
                key = serialization.load_der_public_key(pem_or_der)
        except (ValueError, TypeError):
            raise UsageError(
                "the public key is not a PEM or DER public key",
                hint="pass the .pub file `drkit keys generate --signing` wrote, or the PEM of "
                "the KMS key (aws kms get-public-key)",
            ) from None
        if isinstance(key, ed25519.Ed25519PublicKey):
            self.algorithm = ED25519
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            self.algorithm = ECDSA_P256
        else:
            raise UsageError("the public key is neither Ed25519 nor ECDSA P-256")
        self._key = key
        self.key_id = public_key_id(public_der(key))

    def is_signature_valid(self, message: bytes, signature: bytes) -> bool:
        try:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                self._key.verify(signature, message)
            elif isinstance(self._key, ec.EllipticCurvePublicKey):
                self._key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def generate_signing_key(path: Path) -> tuple[Path, str]:
    """Write a new Ed25519 private key to ``path`` (mode 0600, never overwrites) and its
    public key to ``path.pub``; return the public key's path and key id."""
    public_path = path.with_name(path.name + ".pub")
    for existing in (path, public_path):
        if existing.exists():
            raise RefusedError(
                f"{existing} exists; drkit never overwrites a key",
                hint="choose another path, or move the old key away first",
            )
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise DrkitError(f"cannot create {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    return public_path, public_key_id(public_der(key.public_key()))
