"""The sealed manifest: any one key opens it, no store can read or forge it, and the 0.1.0
plain-JSON format still opens (unauthenticated) where a forgery could not hide."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drkit.crypto import KeyfileKek, PassphraseKek, generate_keyfile
from drkit.errors import IntegrityError, KeyUnavailableError
from drkit.repository.layout import artifact_key, new_snapshot_id
from drkit.repository.manifest import (
    LEGACY_FORMAT,
    Artifact,
    Manifest,
    StoredObject,
    open_manifest,
    read_header,
    seal_manifest,
)
from drkit.secrets import SecretRef

TAKEN = datetime(2026, 11, 27, 15, 30, 0, 42_000, tzinfo=UTC)
PLAN = "api"


def make_manifest(taken_at: datetime = TAKEN, snapshot_id: str | None = None) -> Manifest:
    snapshot_id = snapshot_id or new_snapshot_id(taken_at)
    return Manifest(
        plan=PLAN,
        snapshot_id=snapshot_id,
        taken_at=taken_at,
        finished_at=taken_at + timedelta(seconds=3),
        drkit_version="test",
        sources=["orders-db"],
        artifacts=[
            Artifact(
                source="orders-db",
                type="postgresql",
                format="pg_dump-custom",
                compression="zstd",
                plaintext_size=1234,
                plaintext_sha256="a" * 64,
                fingerprint={"tables": {"public.secret_orders_table": 98765}},
                encrypted=StoredObject(
                    key=artifact_key(PLAN, snapshot_id, "orders-db", "drkit"),
                    size=800,
                    sha256="b" * 64,
                ),
            )
        ],
        plan_sha256="c" * 64,
    )


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[KeyfileKek | PassphraseKek]:
    generate_keyfile(tmp_path / "primary.key")
    monkeypatch.setenv("TEST_BREAK_GLASS", "correct horse")
    return [
        KeyfileKek("primary", str(tmp_path / "primary.key")),
        PassphraseKek("break-glass", SecretRef("env:TEST_BREAK_GLASS")),
    ]


def test_any_one_key_opens_a_sealed_manifest(keys: list[KeyfileKek | PassphraseKek]) -> None:
    manifest = make_manifest()
    data = seal_manifest(manifest, keys)
    for key in keys:
        opened = open_manifest(data, [key], plan=PLAN, snapshot_id=manifest.snapshot_id)
        assert opened.authenticated and opened.manifest == manifest


def test_a_store_reader_sees_only_plan_id_and_time(keys: list[KeyfileKek | PassphraseKek]) -> None:
    manifest = make_manifest()
    data = seal_manifest(manifest, keys)
    for hidden in ("secret_orders_table", "98765", "a" * 64, "b" * 64, "orders-db.drkit"):
        assert hidden.encode() not in data
    header = read_header(data)
    assert (header.plan, header.snapshot_id, header.taken_at) == (
        PLAN,
        manifest.snapshot_id,
        TAKEN,
    )


@pytest.mark.parametrize("offset", [12, 30, -1, -40])
def test_any_flipped_byte_fails_authentication(
    keys: list[KeyfileKek | PassphraseKek], offset: int
) -> None:
    manifest = make_manifest()
    data = bytearray(seal_manifest(manifest, keys))
    data[offset] ^= 0x01
    with pytest.raises(IntegrityError):
        open_manifest(bytes(data), keys, plan=PLAN, snapshot_id=manifest.snapshot_id)


def test_an_edited_clear_header_fails_even_when_it_still_parses(
    keys: list[KeyfileKek | PassphraseKek],
) -> None:
    """Moving the time into the future (the old negative-RPO hole) breaks the binding."""
    manifest = make_manifest()
    data = seal_manifest(manifest, keys)
    forged = data.replace(b'"taken_at":"2026-11-27', b'"taken_at":"2099-11-27')
    assert forged != data
    with pytest.raises(IntegrityError):
        open_manifest(forged, keys, plan=PLAN, snapshot_id=manifest.snapshot_id)


def test_another_snapshots_manifest_copied_over_is_refused(
    keys: list[KeyfileKek | PassphraseKek],
) -> None:
    older = make_manifest(TAKEN - timedelta(hours=1))
    newer = make_manifest()
    with pytest.raises(IntegrityError, match=f"describes snapshot {older.snapshot_id}"):
        open_manifest(seal_manifest(older, keys), keys, plan=PLAN, snapshot_id=newer.snapshot_id)
    with pytest.raises(IntegrityError, match="belongs to plan"):
        open_manifest(seal_manifest(newer, keys), keys, plan="other", snapshot_id=newer.snapshot_id)


def test_a_manifest_sealed_with_someone_elses_key_opens_with_none_of_ours(
    keys: list[KeyfileKek | PassphraseKek], tmp_path: Path
) -> None:
    generate_keyfile(tmp_path / "attacker.key")
    manifest = make_manifest()
    forged = seal_manifest(manifest, [KeyfileKek("primary", str(tmp_path / "attacker.key"))])
    with pytest.raises(KeyUnavailableError, match="different key"):
        open_manifest(forged, keys[:1], plan=PLAN, snapshot_id=manifest.snapshot_id)


def test_a_time_that_disagrees_with_the_id_is_refused(
    keys: list[KeyfileKek | PassphraseKek],
) -> None:
    manifest = make_manifest(snapshot_id=new_snapshot_id(TAKEN + timedelta(seconds=5)))
    with pytest.raises(IntegrityError, match="disagrees with its id"):
        open_manifest(
            seal_manifest(manifest, keys), keys, plan=PLAN, snapshot_id=manifest.snapshot_id
        )


def legacy_bytes(manifest: Manifest, **changes: object) -> bytes:
    document = manifest.model_dump(mode="json") | {"format": LEGACY_FORMAT} | changes
    return json.dumps(document, indent=2, sort_keys=True).encode()


def test_a_release_0_1_0_manifest_opens_unauthenticated(
    keys: list[KeyfileKek | PassphraseKek],
) -> None:
    manifest = make_manifest()
    opened = open_manifest(legacy_bytes(manifest), [], plan=PLAN, snapshot_id=manifest.snapshot_id)
    assert not opened.authenticated
    assert opened.manifest.artifacts == manifest.artifacts


def test_a_plain_manifest_dated_in_the_future_is_refused() -> None:
    future = datetime.now(UTC) + timedelta(days=30)
    manifest = make_manifest(future)
    with pytest.raises(IntegrityError, match="in the future"):
        open_manifest(legacy_bytes(manifest), [], plan=PLAN, snapshot_id=manifest.snapshot_id)


def test_a_plain_manifest_claiming_the_sealed_format_is_refused() -> None:
    manifest = make_manifest()
    with pytest.raises(IntegrityError, match="forged"):
        open_manifest(
            legacy_bytes(manifest, format=2), [], plan=PLAN, snapshot_id=manifest.snapshot_id
        )


def test_a_manifest_pointing_outside_its_snapshot_is_refused() -> None:
    """The 0.1.0 hole: a manifest naming an older snapshot's (restic) object delivered that
    snapshot's data as the newest. Objects must sit where this snapshot's objects sit."""
    manifest = make_manifest()
    older_id = new_snapshot_id(TAKEN - timedelta(days=1))
    spliced = [
        artifact.model_copy(
            update={
                "raw": StoredObject(
                    key=artifact_key(PLAN, older_id, "orders-db", "pgdump"), size=1, sha256="d" * 64
                )
            }
        )
        for artifact in manifest.artifacts
    ]
    data = legacy_bytes(manifest, artifacts=[a.model_dump(mode="json") for a in spliced])
    with pytest.raises(IntegrityError, match="outside its snapshot"):
        open_manifest(data, [], plan=PLAN, snapshot_id=manifest.snapshot_id)
