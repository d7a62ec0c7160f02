"""Key-encryption keys (KEKs): what wraps each artifact's random data key.

Every artifact's data key is wrapped once per configured KEK, and each wrapping is recorded in
the artifact header as a *recipient*: a JSON object of strings naming the key, its type, a
non-secret identity (fingerprint or KMS key ARN) and the wrapped key. Any one KEK opens the
artifact, so losing one key loses nothing.

KEKs are lazy: a key file is read, a passphrase resolved and a KMS client built on first use, so a
restore works while one key is missing as long as another is at hand. A KEK that cannot be loaded
or cannot unwrap raises ``KeyUnavailableError`` naming the key, never the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from drkit.errors import DrkitError, IntegrityError, KeyUnavailableError, RefusedError
from drkit.plan.schema import AwsKmsKey, KeyfileKey, PassphraseKey
from drkit.secrets import Secret, SecretRef

KEY_SIZE = 32
WRAP_NONCE_SIZE = 12
FINGERPRINT_DOMAIN = b"drkit key fingerprint v1"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SALT_SIZE = 16
#: refuse scrypt parameters (from a possibly tampered header) needing more memory than this
SCRYPT_MAX_MEMORY = 256 << 20

Recipient = dict[str, str]


@runtime_checkable
class KeyEncryptionKey(Protocol):
    """A key that wraps and unwraps 32-byte data keys, bound to an artifact's context."""

    name: str
    type: str

    def wrap(self, data_key: bytes, context: bytes) -> Recipient:
        """Wrap ``data_key`` for this key; the returned recipient entry holds no secret.
        Raises KeyUnavailableError when the key cannot be loaded or reached."""
        ...

    def unwrap(self, recipient: Recipient, context: bytes) -> bytes:
        """The data key from this key's ``recipient`` entry. Raises KeyUnavailableError when the
        key cannot be loaded or is a different key, IntegrityError when the entry is damaged."""
        ...


# --- helpers shared by the local key types ---------------------------------------------------


def key_fingerprint(key: bytes) -> str:
    """A non-secret identity of a 32-byte key: 16 hex digits of HMAC-SHA256(key, domain)."""
    return hmac.new(key, FINGERPRINT_DOMAIN, hashlib.sha256).hexdigest()[:16]


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def recipient_bytes(recipient: Recipient, field: str, key_name: str) -> bytes:
    """A base64 field of a recipient entry; IntegrityError when missing or not base64."""
    try:
        return base64.b64decode(recipient_text(recipient, field, key_name), validate=True)
    except binascii.Error:
        raise IntegrityError(f"key {key_name!r}: recipient field {field!r} is not base64") from None


def recipient_text(recipient: Recipient, field: str, key_name: str) -> str:
    value = recipient.get(field)
    if not isinstance(value, str):
        raise IntegrityError(f"key {key_name!r}: recipient entry lacks the field {field!r}")
    return value


def seal_data_key(kek: bytes, data_key: bytes, context: bytes) -> Recipient:
    """AES-256-GCM wrap with a random nonce; the artifact context is the associated data."""
    nonce = os.urandom(WRAP_NONCE_SIZE)
    return {
        "nonce": encode(nonce),
        "wrapped_key": encode(AESGCM(kek).encrypt(nonce, data_key, context)),
    }


def open_data_key(kek: bytes, recipient: Recipient, context: bytes, key_name: str) -> bytes:
    """Unwrap a data key the right KEK (fingerprint already matched) sealed; a failure here
    means the recipient entry was damaged or moved from another artifact."""
    nonce = recipient_bytes(recipient, "nonce", key_name)
    wrapped = recipient_bytes(recipient, "wrapped_key", key_name)
    try:
        data_key = AESGCM(kek).decrypt(nonce, wrapped, context)
    except (InvalidTag, ValueError):
        raise IntegrityError(
            f"key {key_name!r}: the wrapped data key failed authentication "
            "(header damaged, or the entry comes from another artifact)"
        ) from None
    return check_data_key(data_key, key_name)


def check_data_key(data_key: bytes, key_name: str) -> bytes:
    if len(data_key) != KEY_SIZE:
        raise IntegrityError(
            f"key {key_name!r}: unwrapped data key has {len(data_key)} bytes, not 32"
        )
    return data_key


def check_fingerprint(
    key_name: str, actual: str, recipient: Recipient, wrong: str, hint: str
) -> None:
    wanted = recipient_text(recipient, "fingerprint", key_name)
    if not hmac.compare_digest(actual, wanted):
        raise KeyUnavailableError(
            f"key {key_name!r} {wrong} (fingerprint {actual}, artifact wants {wanted})", hint=hint
        )


# --- key file --------------------------------------------------------------------------------


def generate_keyfile(path: str | Path) -> str:
    """Write a new key file (32 random bytes, mode 0600, parent directories created) and return
    its fingerprint. Refuses to overwrite an existing file: that would orphan every snapshot
    written for the old key."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(KEY_SIZE)
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise RefusedError(
            f"key file {target} already exists; not overwriting it",
            hint="choose another path, or move the old key away first: snapshots written for "
            "it need it to be restored",
        ) from None
    except OSError as error:
        raise KeyUnavailableError(
            f"cannot create key file {target}: {error.strerror}",
            hint="check the directory exists and is writable",
        ) from None
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # the umask may not narrow it, so set it outright
        file.write(key)
        file.flush()
        os.fsync(file.fileno())
    return key_fingerprint(key)


def read_keyfile(key_name: str, path: Path) -> bytes:
    """The 32 bytes of a key file; KeyUnavailableError naming the key and path otherwise."""
    hint = (
        f"restore {path} from your key escrow (or fix the plan's path); "
        "any other key the snapshot was written for also decrypts it"
    )
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise KeyUnavailableError(
            f"key {key_name!r}: key file {path} does not exist", hint=hint
        ) from None
    except OSError as error:
        raise KeyUnavailableError(
            f"key {key_name!r}: cannot read key file {path}: {error.strerror}", hint=hint
        ) from None
    if len(key) != KEY_SIZE:
        raise KeyUnavailableError(
            f"key {key_name!r}: key file {path} holds {len(key)} bytes, not 32",
            hint="a drkit key file is 32 random bytes written by `drkit keys generate`",
        )
    return key


class KeyfileKek:
    """A key file of 32 random bytes; wraps with AES-256-GCM."""

    type = "keyfile"

    def __init__(self, name: str, path: str):
        self.name = name
        self.path = Path(path)
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def _load(self) -> bytes:
        with self._lock:
            if self._key is None:
                self._key = read_keyfile(self.name, self.path)
            return self._key

    def wrap(self, data_key: bytes, context: bytes) -> Recipient:
        key = self._load()
        entry = {"name": self.name, "type": self.type, "fingerprint": key_fingerprint(key)}
        return entry | seal_data_key(key, data_key, context)

    def unwrap(self, recipient: Recipient, context: bytes) -> bytes:
        key = self._load()
        hint = f"{self.path} is not the key file this snapshot was written with; find the right one"
        check_fingerprint(self.name, key_fingerprint(key), recipient, "is a different key", hint)
        return open_data_key(key, recipient, context, self.name)


# --- passphrase ------------------------------------------------------------------------------


class PassphraseKek:
    """A passphrase stretched with scrypt; wraps with AES-256-GCM under the derived key.

    One random salt per instance when wrapping, so a snapshot's artifacts share one (slow)
    derivation; derived keys are cached per salt, so unwrapping many artifacts is fast too.
    """

    type = "passphrase"

    def __init__(self, name: str, passphrase: SecretRef):
        self.name = name
        self.passphrase = passphrase
        self._wrap_salt: bytes | None = None
        self._derived: dict[tuple[bytes, int, int, int], bytes] = {}
        self._lock = threading.Lock()

    def _secret(self) -> Secret:
        try:
            secret = self.passphrase.resolve()
        except DrkitError as error:
            raise KeyUnavailableError(
                f"key {self.name!r}: {error.message}", hint=error.hint
            ) from None
        if not secret.reveal():
            raise KeyUnavailableError(f"key {self.name!r}: passphrase {self.passphrase} is empty")
        return secret

    def _derive(self, salt: bytes, n: int, r: int, p: int) -> bytes:
        with self._lock:
            cached = self._derived.get((salt, n, r, p))
            if cached is None:
                secret = self._secret().reveal().encode("utf-8")
                cached = Scrypt(salt=salt, length=KEY_SIZE, n=n, r=r, p=p).derive(secret)
                self._derived[(salt, n, r, p)] = cached
            return cached

    def wrap(self, data_key: bytes, context: bytes) -> Recipient:
        with self._lock:
            if self._wrap_salt is None:
                self._wrap_salt = os.urandom(SALT_SIZE)
            salt = self._wrap_salt
        key = self._derive(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        entry = {
            "name": self.name,
            "type": self.type,
            "salt": encode(salt),
            "scrypt_n": str(SCRYPT_N),
            "scrypt_r": str(SCRYPT_R),
            "scrypt_p": str(SCRYPT_P),
            "fingerprint": key_fingerprint(key),
        }
        return entry | seal_data_key(key, data_key, context)

    def unwrap(self, recipient: Recipient, context: bytes) -> bytes:
        salt = recipient_bytes(recipient, "salt", self.name)
        n, r, p = (
            self._parameter(recipient, field) for field in ("scrypt_n", "scrypt_r", "scrypt_p")
        )
        if n < 2 or n & (n - 1) or 128 * n * r > SCRYPT_MAX_MEMORY or not 1 <= p <= 16:
            raise IntegrityError(
                f"key {self.name!r}: implausible scrypt parameters n={n} r={r} p={p}"
            )
        key = self._derive(salt, n, r, p)
        hint = f"check the passphrase in {self.passphrase}; another key also decrypts"
        check_fingerprint(
            self.name, key_fingerprint(key), recipient, "has the wrong passphrase", hint
        )
        return open_data_key(key, recipient, context, self.name)

    def _parameter(self, recipient: Recipient, field: str) -> int:
        text = recipient_text(recipient, field, self.name)
        if not text.isdigit() or int(text) < 1:
            raise IntegrityError(f"key {self.name!r}: recipient field {field!r} is not a count")
        return int(text)


# --- from the plan ---------------------------------------------------------------------------

KeySpec = KeyfileKey | PassphraseKey | AwsKmsKey


def make_kms_key(spec: AwsKmsKey) -> KeyEncryptionKey:
    from drkit.crypto.kms import AwsKmsKek  # kms builds on this module: import it late

    return AwsKmsKek(spec.name, spec.key_id, spec.region, spec.endpoint_url)


KEY_FACTORIES: dict[str, Callable[[Any], KeyEncryptionKey]] = {
    "keyfile": lambda spec: KeyfileKek(spec.name, spec.path),
    "passphrase": lambda spec: PassphraseKek(spec.name, SecretRef(spec.passphrase)),
    "aws-kms": make_kms_key,
}


def keys_from_plan(specs: Iterable[KeySpec]) -> list[KeyEncryptionKey]:
    """KEKs for a plan's ``keys`` section, in plan order. Nothing is loaded yet: key files,
    passphrases and KMS clients are read on first use."""
    return [KEY_FACTORIES[spec.type](spec) for spec in specs]
