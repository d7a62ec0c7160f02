"""Encryption of artifacts: the streamed, authenticated drkit artifact format and the
key-encryption keys (key file, passphrase, AWS KMS) that wrap each artifact's data key.

The only package that imports ``cryptography``. Stores never see what is in here: they move the
ciphertext ``encrypt_chunks`` yields. The format is specified in docs/artifact-format.md.

    keys = keys_from_plan(plan.keys)              # lazy: nothing is loaded yet
    sealed = encrypt_chunks(plaintext, keys, artifact_context(plan.name, snapshot_id, source))
    plaintext = decrypt_chunks(sealed, keys, same_context)   # any one key suffices
"""

from drkit.crypto.artifact import (
    DEFAULT_CHUNK_SIZE,
    MAGIC,
    ArtifactHeader,
    decrypt_chunks,
    encrypt_chunks,
    header_size,
    read_header,
)
from drkit.crypto.keys import (
    KeyEncryptionKey,
    KeyfileKek,
    PassphraseKek,
    generate_keyfile,
    key_fingerprint,
    keys_from_plan,
)
from drkit.crypto.kms import AwsKmsKek

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAGIC",
    "ArtifactHeader",
    "AwsKmsKek",
    "KeyEncryptionKey",
    "KeyfileKek",
    "PassphraseKek",
    "decrypt_chunks",
    "encrypt_chunks",
    "generate_keyfile",
    "header_size",
    "key_fingerprint",
    "keys_from_plan",
    "read_header",
]
