"""AWS KMS as a key-encryption key. boto3 and botocore are imported only when a KMS key is
first used, so plans without KMS keys never load them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from drkit.crypto.keys import Recipient, check_data_key, encode, recipient_bytes
from drkit.errors import DrkitError, IntegrityError, KeyUnavailableError


def one_line(text: str) -> str:
    return " ".join(text.split())


class AwsKmsKek:
    """An AWS KMS key. Wraps with KMS ``Encrypt``, binding the artifact context as the KMS
    encryption context ``{"drkit": context}``.

    Why Encrypt and not GenerateDataKey: the data key is made once locally and wrapped for
    *every* configured KEK (a key file, a passphrase, KMS in several regions); GenerateDataKey
    would make KMS the source of the key and tie it to one KMS key. Encrypt of a 32-byte key is
    one small call per KEK and artifact. Decrypt names the configured key id, so a header entry
    swapped for one wrapped by some other KMS key that also lets us decrypt is refused.
    """

    type = "aws-kms"

    def __init__(self, name: str, key_id: str, region: str, endpoint_url: str | None = None):
        self.name = name
        self.key_id = key_id
        self.region = region
        self.endpoint_url = endpoint_url
        self._client: Any = None
        self._lock = threading.Lock()
        #: set once KMS proved unreachable: a restore tries this key for every artifact, twice,
        #: and each try would wait out the timeouts and retries again
        self._unreachable: KeyUnavailableError | None = None

    def _kms(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=5,
                    read_timeout=20,
                    retries={"max_attempts": 3, "mode": "standard"},
                )
                session = boto3.session.Session()  # clients from one session per key: thread-safe
                self._client = session.client(
                    "kms", region_name=self.region, endpoint_url=self.endpoint_url, config=config
                )
            return self._client

    def wrap(self, data_key: bytes, context: bytes) -> Recipient:
        response = self._call(
            "Encrypt",
            lambda kms: kms.encrypt(
                KeyId=self.key_id, Plaintext=data_key, EncryptionContext=self._context(context)
            ),
        )
        return {
            "name": self.name,
            "type": self.type,
            "key_id": str(response["KeyId"]),
            "region": self.region,
            "wrapped_key": encode(response["CiphertextBlob"]),
        }

    def unwrap(self, recipient: Recipient, context: bytes) -> bytes:
        blob = recipient_bytes(recipient, "wrapped_key", self.name)
        response = self._call(
            "Decrypt",
            lambda kms: kms.decrypt(
                CiphertextBlob=blob, KeyId=self.key_id, EncryptionContext=self._context(context)
            ),
            wrapped_by=recipient.get("key_id", "?"),
        )
        return check_data_key(bytes(response["Plaintext"]), self.name)

    @staticmethod
    def _context(context: bytes) -> dict[str, str]:
        return {"drkit": context.decode("utf-8")}

    def _call(self, operation: str, call: Callable[[Any], Any], wrapped_by: str = "") -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._unreachable is not None:
            raise KeyUnavailableError(self._unreachable.message, hint=self._unreachable.hint)
        try:
            return call(self._kms())
        except ClientError as error:
            raise self._client_error(operation, error, wrapped_by) from None
        except BotoCoreError as error:
            self._unreachable = self._transport_error(operation, error)
            raise self._transport_error(operation, error) from None

    def _transport_error(self, operation: str, error: Exception) -> KeyUnavailableError:
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError

        where = self.endpoint_url or f"region {self.region}"
        if isinstance(error, NoCredentialsError | PartialCredentialsError):
            return KeyUnavailableError(
                f"key {self.name!r}: no AWS credentials for KMS {operation}",
                hint="configure AWS credentials (environment, profile or instance role)",
            )
        return KeyUnavailableError(
            f"key {self.name!r}: AWS KMS at {where} is unreachable ({one_line(str(error))})",
            hint="check network access to KMS; "
            "any other key the snapshot was written for also decrypts it",
        )

    def _client_error(self, operation: str, error: Any, wrapped_by: str) -> DrkitError:
        code = str(error.response.get("Error", {}).get("Code", "Unknown"))
        detail = one_line(str(error.response.get("Error", {}).get("Message", ""))) or code
        prefix = f"key {self.name!r}: KMS {operation} with {self.key_id} ({self.region})"
        if code == "InvalidCiphertextException":
            return IntegrityError(
                f"{prefix} rejected the wrapped data key "
                "(header damaged, or the entry comes from another artifact)"
            )
        if code == "IncorrectKeyException":
            return KeyUnavailableError(
                f"{prefix}: the data key was wrapped by {wrapped_by}, a different KMS key",
                hint="add a key entry for that KMS key to the plan, or use another key",
            )
        hints = {
            "AccessDeniedException": "grant this identity kms:Encrypt and kms:Decrypt on the key",
            "NotFoundException": "check key_id and region in the plan",
            "DisabledException": "enable the KMS key, or use another key",
            "KMSInvalidStateException": "the KMS key is disabled or pending deletion; cancel that",
        }
        return KeyUnavailableError(f"{prefix} failed: {code}: {detail}", hint=hints.get(code))


class AwsKmsSigner:
    """An AWS KMS asymmetric key (key spec ECC_NIST_P256, usage SIGN_VERIFY) that signs
    evidence records with ``ECDSA_SHA_256``; its public key (GetPublicKey) verifies them
    offline."""

    algorithm = "ecdsa-p256-sha256"

    def __init__(self, key_id: str, region: str, endpoint_url: str | None = None):
        self._kms = AwsKmsKek("evidence", key_id, region, endpoint_url)
        self._public_der: bytes | None = None

    def public_der(self) -> bytes:
        if self._public_der is None:
            kms = self._kms
            response = kms._call(
                "GetPublicKey", lambda client: client.get_public_key(KeyId=kms.key_id)
            )
            self._public_der = bytes(response["PublicKey"])
        return self._public_der

    def key_id(self) -> str:
        from drkit.crypto.signing import public_key_id

        return public_key_id(self.public_der())

    def sign(self, message: bytes) -> bytes:
        kms = self._kms
        response = kms._call(
            "Sign",
            lambda client: client.sign(
                KeyId=kms.key_id,
                Message=message,
                MessageType="RAW",
                SigningAlgorithm="ECDSA_SHA_256",
            ),
        )
        return bytes(response["Signature"])
