"""Corruption in each kind of store (filesystem, S3 on moto, a local restic repository): a
flipped byte, a truncation, a dropped chunk, two swapped chunks, and a manifest replaced by
another snapshot's. `drkit verify` names the store and exits 7; `drkit restore` fails over to a
healthy store, or, with no healthy copy, fails before a single byte reaches any target.

A drkit artifact is sealed in 1 MiB chunks (plus a 16-byte tag each), so the config source
carries a random 3 MiB file. restic stores the raw stream in its own authenticated repository:
there the damage is done to the pack file holding that file's data."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drkit.actions.backup import backup
from drkit.actions.resources import Resources, open_resources
from drkit.actions.restore import RestoreRequest, execute_restore, prepare_restore
from drkit.catalog import Catalog
from drkit.crypto.artifact import PREFIX_SIZE, TAG_SIZE, header_size
from drkit.errors import ExitCode, IntegrityError
from drkit.plan.loader import load_plan
from drkit.repository.layout import artifact_key, manifest_key
from drkit.repository.manifest import sha256_hex
from drkit.stores import make_store

from ..stores.conftest import (  # noqa: F401 - fixtures
    RESTIC_PASSWORD_VARIABLE,
    restic_environment,
    restic_template,
)
from .conftest import Setup, filesystem_stores, make_setup
from .helpers import json_output, run_drkit, tree_digest

CHUNK = 1024 * 1024 + TAG_SIZE  # one sealed chunk
BIG_FILE_SIZE = 3 * 1024 * 1024
DAMAGES = ("flipped-byte", "truncated", "dropped-chunk", "swapped-chunks", "other-manifest")
PLAN = "test-api"


# --- damaging drkit artifacts (filesystem and S3) ----------------------------------------------


def damage_artifact(data: bytes, how: str) -> bytes:
    """The artifact's bytes with one kind of damage, cut along its sealed chunks."""
    start = header_size(data[:PREFIX_SIZE])
    header, body = data[:start], data[start:]
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
    assert len(chunks) >= 3, "the artifact must span several chunks"
    if how == "flipped-byte":
        damaged = bytearray(body)
        damaged[CHUNK + 1234] ^= 0x01
        return header + bytes(damaged)
    if how == "truncated":  # cut at a chunk boundary: decryption sees it by the final flag
        return header + b"".join(chunks[:-1])
    if how == "dropped-chunk":
        return header + b"".join(chunks[:1] + chunks[2:])
    if how == "swapped-chunks":
        return header + b"".join([chunks[1], chunks[0], *chunks[2:]])
    raise ValueError(how)


# --- one victim store per kind, next to a healthy filesystem store ---------------------------


@dataclass
class Victim:
    """A plan with a store to damage (``victim``) and a healthy one (``spare``)."""

    setup: Setup
    kind: str
    only_victim: Path  # the same plan without the spare store
    read: Callable[[str], bytes]
    write: Callable[[str, bytes], None]
    packs: list[set[Path]] = field(default_factory=list)  # restic: new data packs per backup


def restic_packs(repository: Path) -> set[Path]:
    return set((repository / "data").rglob("*")) - set((repository / "data").glob("*"))


@pytest.fixture(params=["filesystem", "s3", "restic"])
def victim(request: pytest.FixtureRequest, tmp_path: Path) -> Victim:
    kind: str = request.param
    stores: list[dict[str, Any]]
    if kind == "filesystem":
        stores = filesystem_stores(tmp_path, "victim", "spare")
    elif kind == "s3":
        endpoint: str = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        stores = [
            {"name": "victim", "type": "s3", "bucket": bucket, "region": "us-east-1"}
            | {"endpoint_url": endpoint, "prefix": "corruption"},
            *filesystem_stores(tmp_path, "spare"),
        ]
    else:
        template: Path = request.getfixturevalue("restic_template")
        repository = tmp_path / "restic-repository"
        shutil.copytree(template, repository)
        request.getfixturevalue("monkeypatch").setenv(
            "RESTIC_CACHE_DIR", str(tmp_path / "restic-cache")
        )
        stores = [
            {"name": "victim", "type": "restic", "repository": str(repository)}
            | {"password": f"env:{RESTIC_PASSWORD_VARIABLE}", "region": "eu-central-1"},
            *filesystem_stores(tmp_path, "spare"),
        ]
    setup = make_setup(tmp_path, stores)
    only_victim = setup.rewrite("only-victim.yaml", stores=stores[:1])
    store = make_store(load_plan(setup.plan).stores[0])

    def read(key: str) -> bytes:
        return b"".join(store.get(key))

    def write(key: str, data: bytes) -> None:
        store.put(key, [data])

    return Victim(setup, kind, only_victim, read, write)


def take_snapshots(
    setup: Setup, count: int, packs: Callable[[], set[Path]] = set
) -> tuple[list[str], list[set[Path]]]:
    """``count`` snapshots, each with a fresh random 3 MiB file (no restic deduplication),
    and what ``packs`` found new after each (restic: the pack files it wrote)."""
    ids, new_packs = [], []
    with Catalog.open(setup.catalog) as catalog:
        resources = open_resources(load_plan(setup.plan), catalog)
        for _ in range(count):
            (setup.backend["config"] / "bundle.bin").write_bytes(os.urandom(BIG_FILE_SIZE))
            before = packs()
            result = backup(resources)
            assert result.outcome.value == "ok", result.error
            new_packs.append(packs() - before)
            ids.append(result.snapshot_id)
    return ids, new_packs


def repository(victim: Victim) -> Path:
    return victim.setup.tmp / "restic-repository"


def largest(packs: set[Path]) -> Path:
    return max(packs, key=lambda path: path.stat().st_size)


def damage(victim: Victim, snapshots: list[str], how: str, target: str) -> None:
    """Damage snapshot ``target``'s config artifact in the victim store (``snapshots[0]``
    stays intact: its manifest is the one copied over another's)."""
    if how == "other-manifest":
        victim.write(manifest_key(PLAN, target), victim.read(manifest_key(PLAN, snapshots[0])))
        return
    if victim.kind != "restic":
        key = artifact_key(PLAN, target, "app-config", "drkit")
        victim.write(key, damage_artifact(victim.read(key), how))
        return
    pack = largest(victim.packs[snapshots.index(target)])
    data = pack.read_bytes()
    pack.chmod(0o600)  # restic writes packs read-only
    if how == "flipped-byte":
        pack.write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    elif how == "truncated":
        pack.write_bytes(data[: len(data) // 2])
    elif how == "dropped-chunk":
        pack.unlink()
    elif how == "swapped-chunks":  # two packs trade places (their names are their hashes)
        other = largest(victim.packs[1])  # the flipped-byte snapshot's: damaged twice over
        other.chmod(0o600)
        swapped = other.read_bytes()
        other.write_bytes(data)
        pack.write_bytes(swapped)


@pytest.fixture
def damaged(victim: Victim) -> Iterator[tuple[Victim, dict[str, str], str]]:
    """Snapshots 1..5 of the victim store each carry one kind of damage; 0 is intact."""
    packs = (lambda: restic_packs(repository(victim))) if victim.kind == "restic" else set
    snapshots, victim.packs = take_snapshots(victim.setup, len(DAMAGES) + 1, packs)
    by_damage = dict(zip(DAMAGES, snapshots[1:], strict=True))
    for how, target in by_damage.items():
        damage(victim, snapshots, how, target)
    yield victim, by_damage, snapshots[0]


def restore_targets(base: Path) -> dict[str, str]:
    return {"app-db": str(base / "app.db"), "app-config": str(base / "config")}


def cli_targets(base: Path) -> list[str]:
    return [arg for name, t in restore_targets(base).items() for arg in ("--to", f"{name}={t}")]


@pytest.mark.s3
@pytest.mark.restic
@pytest.mark.slow
def test_each_damage_is_caught_by_verify_and_restore(
    damaged: tuple[Victim, dict[str, str], str], tmp_path: Path
) -> None:
    victim, by_damage, intact = damaged
    setup = victim.setup

    checked = run_drkit(setup.catalog, "verify", "--all", "--store", "victim", str(setup.plan))
    assert checked.returncode == ExitCode.INTEGRITY, checked.stdout + checked.stderr
    lines = dict(line.split("  ", 1) for line in checked.stdout.splitlines())
    assert lines[intact] == "victim: ok (2 objects)"
    for how, snapshot in by_damage.items():
        assert lines[snapshot].startswith("victim: FAILED: "), (how, lines[snapshot])
    assert f"describes snapshot {intact}" in lines[by_damage["other-manifest"]]
    if victim.kind != "restic":
        for how in DAMAGES[:4]:
            assert "is corrupt" in lines[by_damage[how]], how

    # With the spare store: every damaged snapshot restores from it, failing over.
    failover = run_drkit(
        setup.catalog, "restore", "--json", "--yes", str(setup.plan), "--store", "victim",
        "--snapshot", by_damage["swapped-chunks"], *cli_targets(tmp_path / "via-cli"),
    )  # fmt: skip
    assert failover.returncode == ExitCode.OK, failover.stderr
    items = {item["source"]: item for item in json_output(failover)["items"]}
    assert items["app-config"]["store"] == "spare" and items["app-config"]["verified"]
    assert items["app-config"]["failovers"][0].startswith("victim: ")

    # Without it: nothing is applied, not even the intact SQLite artifact staged first.
    refused_base = tmp_path / "refused-cli"
    refused = run_drkit(
        setup.catalog, "restore", "--yes", str(victim.only_victim),
        "--snapshot", by_damage["flipped-byte"], *cli_targets(refused_base),
    )  # fmt: skip
    assert refused.returncode == ExitCode.INTEGRITY, refused.stderr
    assert "victim" in refused.stderr and "Traceback" not in refused.stderr
    assert not refused_base.exists()

    with Catalog.open(setup.catalog) as catalog:
        both = open_resources(load_plan(setup.plan), catalog)
        alone = open_resources(load_plan(victim.only_victim), catalog)
        for how, snapshot in by_damage.items():
            base = tmp_path / "restored" / how
            restored = {item.source: item for item in restore(both, snapshot, base)}
            assert not any(item.differences for item in restored.values()), how
            if how != "other-manifest":  # there the objects are whole: the spare's manifest
                assert restored["app-config"].store == "spare", how  # vouches for them
            untouched = tmp_path / "untouched" / how
            with pytest.raises(IntegrityError, match="victim"):
                restore(alone, snapshot, untouched)
            assert tree_digest(untouched) == tree_digest(tmp_path / "nothing"), how
        assert [i.store for i in restore(alone, intact, tmp_path / "intact")] == ["victim"] * 2


def restore(resources: Resources, snapshot: str, base: Path) -> list[Any]:
    request = RestoreRequest(snapshot_id=snapshot, targets=restore_targets(base))
    prepared = prepare_restore(resources, request)
    execute_restore(resources, prepared, force=False)
    return prepared.items


@pytest.mark.parametrize(
    "line",
    [
        "Load(<data/27984da1c3>, 1177077, 731515) returned error, retrying after 1.3s: EOF",
        "Load(<data/27984da1c3>, 1177077, 0) returned error, retrying after 552ms: unexpected EOF",
        "Load(<data/cf39c760e2>, 885174, 0) returned error, retrying after 1s: open "
        "/repo/data/cf/cf39c760e2: no such file or directory",
        "Load(<data/cf39c760e2>, 885174, 0) returned error, retrying after 2s: The specified "
        "key does not exist.",
    ],
)
def test_restic_reads_of_lost_data_are_stopped_not_retried_for_a_minute(line: str) -> None:
    from drkit.stores.restic import LOST_DATA, Failure, classify_failure

    assert LOST_DATA.search(f"{line}\n".lower())
    assert classify_failure(line) is Failure.DAMAGED


def test_restic_retries_of_an_unreachable_backend_are_left_to_restic() -> None:
    from drkit.stores.restic import LOST_DATA

    line = "Load(<data/cf39c760e2>, 1, 0) returned error, retrying after 1s: dial tcp: i/o timeout"
    assert not LOST_DATA.search(line.lower())


@pytest.mark.parametrize("how", DAMAGES[:4])
def test_damage_behind_a_forged_plain_manifest_still_fails_authentication(
    how: str, tmp_path: Path
) -> None:
    """Someone with write access to a store (and, worst case, the manifest's content) damages
    an artifact and replaces the sealed manifest with a plain-JSON one of release 0.1.0's
    format whose size and hash match the damage: with no catalog to compare against, the
    chunks' authentication catches it before anything is restored."""
    setup = make_setup(tmp_path, filesystem_stores(tmp_path, "victim"))
    [snapshot], _ = take_snapshots(setup, 1)
    root = setup.stores["victim"]
    resources = open_resources(load_plan(setup.plan), None)  # no catalog: the stores' word
    store = resources.stores[0]
    manifest = resources.repository.open_manifest(store, snapshot).manifest
    artifact = root / artifact_key(PLAN, snapshot, "app-config", "drkit")
    damaged = damage_artifact(artifact.read_bytes(), how)
    artifact.write_bytes(damaged)
    document = manifest.model_dump(mode="json") | {"format": 1}
    for entry in document["artifacts"]:
        if entry["source"] == "app-config":
            entry["encrypted"] |= {"size": len(damaged), "sha256": sha256_hex(damaged)}
    (root / manifest_key(PLAN, snapshot)).write_text(json.dumps(document))
    with pytest.raises(IntegrityError, match="victim: ") as raised:
        restore(resources, snapshot, tmp_path / "target")
    expected = {  # the hashes matched: the authenticated chunks caught it
        "flipped-byte": "chunk 1 failed authentication",
        "truncated": "truncated: final chunk missing",
        "dropped-chunk": "chunk 1 failed authentication",
        "swapped-chunks": "chunk 0 failed authentication",
    }
    assert expected[how] in str(raised.value)
    assert not (tmp_path / "target").exists()
