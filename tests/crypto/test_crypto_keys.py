"""Key-encryption keys: key files, passphrases, laziness, and the errors a user meets."""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from drkit.crypto import (
    KeyEncryptionKey,
    KeyfileKek,
    PassphraseKek,
    decrypt_chunks,
    encrypt_chunks,
    generate_keyfile,
    key_fingerprint,
    keys_from_plan,
    read_header,
)
from drkit.crypto import keys as keys_module
from drkit.errors import IntegrityError, KeyUnavailableError, RefusedError
from drkit.plan.schema import KeyfileKey, PassphraseKey
from drkit.secrets import SecretRef

CONTEXT = "drkit:orders:20261127T153000.000Z-3fa2c1:orders-db"
PLAINTEXT = b"pg_dump output\n" * 1000


def seal(keys: Sequence[KeyEncryptionKey], plaintext: bytes = PLAINTEXT) -> bytes:
    return b"".join(encrypt_chunks([plaintext], keys, CONTEXT, chunk_size=4096))


def unseal(artifact: bytes, keys: Sequence[KeyEncryptionKey]) -> bytes:
    return b"".join(decrypt_chunks([artifact], keys, CONTEXT))


# --- key files --------------------------------------------------------------------------------


def test_generate_keyfile_writes_32_bytes_mode_0600_in_new_directories(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "drkit" / "primary.key"
    fingerprint = generate_keyfile(path)
    assert len(path.read_bytes()) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert fingerprint == key_fingerprint(path.read_bytes())
    assert len(fingerprint) == 16


def test_generate_keyfile_refuses_to_overwrite(keyfile_path: Path) -> None:
    before = keyfile_path.read_bytes()
    with pytest.raises(RefusedError, match="already exists") as caught:
        generate_keyfile(keyfile_path)
    assert "move the old key away" in caught.value.hint
    assert keyfile_path.read_bytes() == before


def test_keyfile_round_trip_records_the_fingerprint(
    keyfile_key: KeyfileKek, keyfile_path: Path
) -> None:
    artifact = seal([keyfile_key])
    (recipient,) = read_header(artifact).recipients
    assert recipient["type"] == "keyfile"
    assert recipient["fingerprint"] == key_fingerprint(keyfile_path.read_bytes())
    assert unseal(artifact, [keyfile_key]) == PLAINTEXT


def test_wrong_keyfile_names_both_fingerprints(keyfile_key: KeyfileKek, tmp_path: Path) -> None:
    artifact = seal([keyfile_key])
    other_path = tmp_path / "other.key"
    other_fingerprint = generate_keyfile(other_path)
    wanted = read_header(artifact).recipients[0]["fingerprint"]
    with pytest.raises(KeyUnavailableError) as caught:
        unseal(artifact, [KeyfileKek("primary", str(other_path))])
    expected = f"(fingerprint {other_fingerprint}, artifact wants {wanted})"
    assert f"key 'primary' is a different key {expected}" in caught.value.message


def test_missing_keyfile_is_named_with_a_hint(tmp_path: Path) -> None:
    key = KeyfileKek("primary", str(tmp_path / "gone.key"))
    with pytest.raises(
        KeyUnavailableError, match=r"key 'primary': key file .*gone.key does not exist"
    ) as caught:
        seal([key])
    assert "escrow" in caught.value.hint


def test_keyfile_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.key"
    path.write_bytes(b"too short")
    with pytest.raises(KeyUnavailableError, match="holds 9 bytes, not 32"):
        seal([KeyfileKek("primary", str(path))])


# --- passphrases ------------------------------------------------------------------------------


def test_passphrase_round_trip(passphrase_key: PassphraseKek) -> None:
    artifact = seal([passphrase_key])
    (recipient,) = read_header(artifact).recipients
    assert (recipient["scrypt_n"], recipient["scrypt_r"], recipient["scrypt_p"]) == (
        "32768",
        "8",
        "1",
    )
    fresh = PassphraseKek("break-glass", passphrase_key.passphrase)
    assert unseal(artifact, [fresh]) == PLAINTEXT


def test_wrong_passphrase_is_reported_without_revealing_either(
    passphrase_key: PassphraseKek, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = seal([passphrase_key])
    monkeypatch.setenv("DRKIT_TEST_WRONG", "Tr0ub4dor&3")
    wrong = PassphraseKek("break-glass", SecretRef("env:DRKIT_TEST_WRONG"))
    with pytest.raises(
        KeyUnavailableError, match="key 'break-glass' has the wrong passphrase"
    ) as caught:
        unseal(artifact, [wrong])
    assert "Tr0ub4dor" not in str(caught.value) + caught.value.hint
    assert passphrase_key.passphrase.resolve().reveal() not in str(caught.value) + caught.value.hint


def test_unset_passphrase_variable_names_the_key_and_variable() -> None:
    key = PassphraseKek("break-glass", SecretRef("env:DRKIT_TEST_NEVER_SET"))
    with pytest.raises(
        KeyUnavailableError, match=r"key 'break-glass': .*DRKIT_TEST_NEVER_SET is not set"
    ):
        seal([key])


def test_one_salt_per_instance_and_one_derivation_per_salt(
    passphrase_key: PassphraseKek, monkeypatch: pytest.MonkeyPatch
) -> None:
    derivations = []
    real_scrypt = keys_module.Scrypt  # type: ignore[attr-defined]

    def counting_scrypt(**kwargs: object) -> object:
        derivations.append(kwargs["salt"])
        return real_scrypt(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(keys_module, "Scrypt", counting_scrypt)
    artifacts = [seal([passphrase_key], bytes([n]) * 100) for n in range(3)]
    salts = {read_header(artifact).recipients[0]["salt"] for artifact in artifacts}
    assert len(salts) == 1
    reader = PassphraseKek("break-glass", passphrase_key.passphrase)
    assert [unseal(artifact, [reader]) for artifact in artifacts] == [
        bytes([n]) * 100 for n in range(3)
    ]
    assert len(derivations) == 2  # once for writing, once for reading all three


def test_tampered_scrypt_parameters_are_refused_before_deriving(
    passphrase_key: PassphraseKek,
) -> None:
    (recipient,) = read_header(seal([passphrase_key])).recipients
    with pytest.raises(IntegrityError, match="implausible scrypt parameters"):
        passphrase_key.unwrap(recipient | {"scrypt_n": str(2**30)}, CONTEXT.encode())


# --- several keys -----------------------------------------------------------------------------


def test_any_one_of_several_keys_decrypts(
    keyfile_key: KeyfileKek, passphrase_key: PassphraseKek, tmp_path: Path
) -> None:
    generate_keyfile(tmp_path / "second.key")
    second = KeyfileKek("second", str(tmp_path / "second.key"))
    artifact = seal([keyfile_key, second, passphrase_key])
    assert read_header(artifact).key_names == ["primary", "second", "break-glass"]
    for key in (keyfile_key, second, passphrase_key):
        assert unseal(artifact, [key]) == PLAINTEXT


def test_missing_keyfile_falls_back_to_the_passphrase(
    keyfile_key: KeyfileKek, keyfile_path: Path, passphrase_key: PassphraseKek
) -> None:
    artifact = seal([keyfile_key, passphrase_key])
    keyfile_path.unlink()
    lost = KeyfileKek("primary", str(keyfile_path))
    assert unseal(artifact, [lost, passphrase_key]) == PLAINTEXT


def test_when_no_key_opens_every_reason_is_listed_on_one_line(
    keyfile_key: KeyfileKek, keyfile_path: Path, passphrase_key: PassphraseKek, tmp_path: Path
) -> None:
    artifact = seal([keyfile_key, passphrase_key])
    keyfile_path.unlink()
    lost = KeyfileKek("primary", str(keyfile_path))
    unset = PassphraseKek("break-glass", SecretRef("env:DRKIT_TEST_NEVER_SET"))
    generate_keyfile(tmp_path / "stranger.key")
    stranger = KeyfileKek("stranger", str(tmp_path / "stranger.key"))
    with pytest.raises(KeyUnavailableError) as caught:
        unseal(artifact, [lost, unset, stranger])
    message = caught.value.message
    assert "\n" not in message
    assert "written for primary, break-glass" in message
    assert "key 'primary': key file" in message
    assert "DRKIT_TEST_NEVER_SET is not set" in message
    assert "key 'stranger': the artifact was not written for it" in message


def test_encrypting_refuses_when_any_configured_key_is_unavailable(
    keyfile_key: KeyfileKek, tmp_path: Path
) -> None:
    lost = KeyfileKek("offsite", str(tmp_path / "missing.key"))
    with pytest.raises(KeyUnavailableError, match="key 'offsite'"):
        seal([keyfile_key, lost])


def test_keys_from_plan_loads_nothing_until_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs: list[KeyfileKey | PassphraseKey] = [
        KeyfileKey(name="primary", type="keyfile", path=str(tmp_path / "later.key")),
        PassphraseKey(name="break-glass", type="passphrase", passphrase="env:DRKIT_TEST_LATER"),
    ]
    keys = keys_from_plan(specs)  # neither the file nor the variable exists yet
    assert [(key.name, key.type) for key in keys] == [
        ("primary", "keyfile"),
        ("break-glass", "passphrase"),
    ]
    generate_keyfile(tmp_path / "later.key")
    monkeypatch.setenv("DRKIT_TEST_LATER", "late passphrase")
    artifact = seal(keys)
    assert unseal(artifact, keys_from_plan(specs[1:])) == PLAINTEXT
