"""The reference decryptor in docs/artifact-format.md really decrypts drkit artifacts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from drkit.crypto import KeyfileKek, PassphraseKek, encrypt_chunks

DOC = Path(__file__).resolve().parents[2] / "docs" / "artifact-format.md"
CONTEXT = "drkit:orders:20261127T153000.000Z-3fa2c1:orders-db"


@pytest.fixture
def decryptor(tmp_path: Path) -> Path:
    """The first python block after the "Reference decryptor" heading, as a script."""
    section = DOC.read_text(encoding="utf-8").split("## Reference decryptor", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no python block under ## Reference decryptor"
    assert len(match.group(1).splitlines()) <= 40
    script = tmp_path / "decrypt.py"
    script.write_text(match.group(1), encoding="utf-8")
    return script


def run(
    script: Path, artifact: Path, key_name: str, secret: Path, context: str = CONTEXT
) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, str(script), str(artifact), key_name, str(secret), context]
    return subprocess.run(command, capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("size", [0, 4096, 4096 * 3, 4096 * 3 + 5])
def test_reference_decryptor_opens_artifacts_with_a_keyfile(
    decryptor: Path, keyfile_key: KeyfileKek, keyfile_path: Path, tmp_path: Path, size: int
) -> None:
    plaintext = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    artifact = tmp_path / "source.drkit"
    artifact.write_bytes(
        b"".join(encrypt_chunks([plaintext], [keyfile_key], CONTEXT, chunk_size=4096))
    )
    result = run(decryptor, artifact, "primary", keyfile_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == plaintext


def test_reference_decryptor_opens_a_passphrase_recipient(
    decryptor: Path, keyfile_key: KeyfileKek, passphrase_key: PassphraseKek, tmp_path: Path
) -> None:
    plaintext = b"config: value\n" * 10_000
    artifact = tmp_path / "source.drkit"
    artifact.write_bytes(
        b"".join(encrypt_chunks([plaintext], [keyfile_key, passphrase_key], CONTEXT))
    )
    passphrase_file = tmp_path / "passphrase.txt"
    passphrase_file.write_text(
        passphrase_key.passphrase.resolve().reveal() + "\n", encoding="utf-8"
    )
    result = run(decryptor, artifact, "break-glass", passphrase_file)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == plaintext


def test_reference_decryptor_rejects_truncation_and_other_contexts(
    decryptor: Path, keyfile_key: KeyfileKek, keyfile_path: Path, tmp_path: Path
) -> None:
    sealed = list(encrypt_chunks([bytes(10_000)], [keyfile_key], CONTEXT, chunk_size=4096))
    truncated = tmp_path / "truncated.drkit"
    truncated.write_bytes(b"".join(sealed[:-1]))
    result = run(decryptor, truncated, "primary", keyfile_path)
    assert result.returncode != 0 and result.stdout == b""
    whole = tmp_path / "whole.drkit"
    whole.write_bytes(b"".join(sealed))
    result = run(decryptor, whole, "primary", keyfile_path, context="drkit:orders:other:orders-db")
    assert result.returncode != 0 and result.stdout == b""


def test_reference_decryptor_opens_a_sealed_manifest_without_being_told_its_context(
    decryptor: Path, keyfile_key: KeyfileKek, keyfile_path: Path, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from drkit.repository.layout import new_snapshot_id
    from drkit.repository.manifest import Manifest, seal_manifest

    taken = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    manifest = Manifest(
        plan="orders",
        snapshot_id=new_snapshot_id(taken),
        taken_at=taken,
        finished_at=taken,
        drkit_version="test",
        sources=[],
        artifacts=[],
        plan_sha256="0" * 64,
    )
    sealed = tmp_path / "manifest.json"
    sealed.write_bytes(seal_manifest(manifest, [keyfile_key]))
    result = run(decryptor, sealed, "primary", keyfile_path, context="")
    assert result.returncode == 0, result.stderr.decode()
    assert Manifest.model_validate_json(result.stdout) == manifest
    damaged = bytearray(sealed.read_bytes())
    damaged[40] ^= 0x01  # inside the clear header: the context no longer matches
    sealed.write_bytes(bytes(damaged))
    result = run(decryptor, sealed, "primary", keyfile_path, context="")
    assert result.returncode != 0 and result.stdout == b""
