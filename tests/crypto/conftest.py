"""Fixtures for the crypto tests: real key files and passphrases in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from drkit.crypto import KeyfileKek, PassphraseKek, generate_keyfile
from drkit.secrets import SecretRef

PASSPHRASE_ENV = "DRKIT_TEST_PASSPHRASE"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def keyfile_path(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "primary.key"
    generate_keyfile(path)
    return path


@pytest.fixture
def keyfile_key(keyfile_path: Path) -> KeyfileKek:
    return KeyfileKek("primary", str(keyfile_path))


@pytest.fixture
def passphrase_key(monkeypatch: pytest.MonkeyPatch) -> PassphraseKek:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    return PassphraseKek("break-glass", SecretRef(f"env:{PASSPHRASE_ENV}"))
