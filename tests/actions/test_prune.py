"""`drkit prune` end to end: what the policy keeps in filesystem stores, what is never deleted
(newest complete, newest drill-verified, snapshots under S3 Object Lock), the order of
deletion (manifest first), dry runs, the CLI, restic compaction, and Object Lock verification."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import subprocess
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from drkit.actions.backup import record_backup, run_backup
from drkit.actions.prune import prune
from drkit.actions.resources import Resources, open_resources
from drkit.actions.verify import find_lock_problem, verify
from drkit.catalog import Catalog, DrillInput
from drkit.cli import main
from drkit.cli.prune import describe_store
from drkit.errors import ExitCode, StoreUnavailable
from drkit.outcome import Outcome
from drkit.plan.schema import ObjectLock
from drkit.repository.layout import manifest_key, snapshot_prefix
from drkit.stores.base import Abilities, Store
from drkit.stores.faults import FaultyStore
from drkit.stores.restic import ResticStore
from tests.stores.conftest import (  # noqa: F401 - session fixtures, reused
    RESTIC_PASSWORD,
    RESTIC_PASSWORD_VARIABLE,
    restic_environment,
    restic_template,
)

from .conftest import load, plan_document

PLAN = "test-api"
DAY = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def at(days: float, hours: float = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hours)


def backup_at(resources: Resources, when: datetime) -> str:
    """A backup taken as if at ``when`` (its id encodes that time), recorded like `drkit
    backup` records it; returns the snapshot id."""
    result = run_backup(resources, now=when)
    assert result.outcome is not Outcome.FAILED or result.committed is not None, result.error
    catalog = resources.catalog
    if catalog is not None:
        run_id = catalog.start_run(PLAN, "backup")
        record_backup(resources, result, run_id)
        catalog.finish_run(run_id, result.outcome.value)
    return result.snapshot_id


def store_named(resources: Resources, name: str) -> Store:
    return next(store for store in resources.stores if store.name == name)


def held(resources: Resources, name: str) -> list[str]:
    return resources.repository.list_snapshot_ids(store_named(resources, name))


def copy_status(catalog: Catalog, snapshot_id: str, store: str) -> str | None:
    record = catalog.get_snapshot(snapshot_id)
    copy = record.copy_in(store) if record is not None else None
    return copy.status if copy is not None else None


def tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def passed_drill(catalog: Catalog, snapshot_id: str) -> None:
    moment = datetime.now(UTC)
    catalog.record_drill(
        DrillInput(PLAN, snapshot_id, "east", moment, moment + timedelta(seconds=5), Outcome.OK)
    )


class RecordingStore:
    """Passes everything to ``inner`` and records deletions in a shared journal; the
    ``fail_at``-th deletion (1-based, across the journal) fails like a dropped connection."""

    def __init__(self, inner: Store, journal: list[tuple[str, str]], fail_at: int | None = None):
        self.inner = inner
        self.name = inner.name
        self.region = inner.region
        self.wants_plaintext = inner.wants_plaintext
        self.journal = journal
        self.fail_at = fail_at

    def describe(self) -> str:
        return self.inner.describe()

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        return self.inner.put(key, chunks)

    def get(self, key: str) -> Iterator[bytes]:
        return self.inner.get(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def abilities(self) -> Abilities:
        return self.inner.abilities()

    def delete(self, key: str) -> None:
        self.journal.append((self.name, key))
        if self.fail_at == len(self.journal):
            raise StoreUnavailable(f"store {self.name}: connection reset (injected)")
        self.inner.delete(key)


# --- policy, protection, catalog ----------------------------------------------------------------


def test_prune_keeps_the_newest_of_each_recent_day_and_marks_deleted_copies(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    catalog: Catalog,
) -> None:
    resources = make_resources(two_regions, retention={"keep_daily": 2})
    day1_early, day1_late, day2, day3_early, day3_late = (
        backup_at(resources, when) for when in (at(0), at(0, 6), at(1), at(2), at(2, 6))
    )

    result = prune(resources)

    assert result.outcome == "ok", result.error
    for store in result.stores:
        assert store.deleted == [day1_early, day1_late, day3_early]
        assert store.kept == {
            day3_late: ["newest complete", "daily 2026-11-22"],
            day2: ["daily 2026-11-21"],
        }
        assert held(resources, store.store) == [day2, day3_late]
        for gone in store.deleted:
            assert store_named(resources, store.store).list(snapshot_prefix(PLAN, gone)) == []
            assert copy_status(catalog, gone, store.store) == "deleted"
        assert copy_status(catalog, day2, store.store) == "complete"
    assert verify(resources, all_snapshots=True).ok  # what is kept is intact
    run = catalog.last_run(PLAN, "prune")
    assert run is not None and run.outcome == "ok" and run.id == result.run_id
    assert run.summary is not None
    assert run.summary["stores"][0]["deleted"] == [day1_early, day1_late, day3_early]


def test_prune_never_deletes_the_newest_complete_nor_the_newest_drill_verified(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    catalog: Catalog,
) -> None:
    resources = make_resources(
        two_regions, copies={"min_stores": 2, "min_regions": 2}, retention={"keep_last": 1}
    )
    drilled, middle, complete = (backup_at(resources, at(day)) for day in range(3))
    west = resources.stores[1]
    resources.stores[1] = FaultyStore(west, fail_next={"put": 100})
    partial = backup_at(resources, at(3))  # committed in east only: below the copy policy
    resources.stores[1] = west
    passed_drill(catalog, drilled)

    result = prune(resources)

    assert result.protected == {complete: "newest complete", drilled: "newest drill-verified"}
    east, west_result = result.stores
    assert east.kept == {
        partial: ["last 1"],
        complete: ["newest complete"],
        drilled: ["newest drill-verified"],
    }
    assert west_result.kept == {
        complete: ["newest complete", "last 1"],
        drilled: ["newest drill-verified"],
    }
    assert east.deleted == west_result.deleted == [middle]
    assert held(resources, "east") == [drilled, complete, partial]
    assert held(resources, "west") == [drilled, complete]


def test_without_a_catalog_the_stores_say_which_snapshot_is_complete(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
) -> None:
    resources = make_resources(
        two_regions,
        with_catalog=False,
        copies={"min_stores": 2, "min_regions": 2},
        retention={"keep_last": 1},
    )
    oldest, complete = backup_at(resources, at(0)), backup_at(resources, at(1))
    resources.stores[1] = FaultyStore(resources.stores[1], fail_next={"put": 100})
    partial = backup_at(resources, at(2))

    result = prune(resources)

    assert result.protected == {complete: "newest complete"}
    assert held(resources, "east") == [complete, partial]
    assert result.stores[0].deleted == [oldest]
    assert result.run_id is None


def test_a_store_retention_overrides_the_plan_and_no_rules_keep_everything(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
) -> None:
    two_regions[0]["retention"] = {"keep_last": 1}
    resources = make_resources(two_regions)  # the plan itself sets no retention rule
    first, second, third = (backup_at(resources, at(day)) for day in range(3))

    result = prune(resources)

    east, west = result.stores
    assert east.deleted == [first, second] and list(east.kept) == [third]
    assert west.deleted == []
    assert west.kept == {
        third: ["newest complete", "no retention rule set"],
        second: ["no retention rule set"],
        first: ["no retention rule set"],
    }
    assert held(resources, "west") == [first, second, third]


# --- order of deletion, failures, dry run -----------------------------------------------------


def test_each_manifest_is_deleted_before_the_artifacts_it_points_at(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
) -> None:
    resources = make_resources(two_regions, retention={"keep_last": 1})
    old = [backup_at(resources, at(day)) for day in range(2)]
    backup_at(resources, at(2))
    journal: list[tuple[str, str]] = []
    resources.stores[:] = [RecordingStore(store, journal) for store in resources.stores]

    prune(resources)

    for store in ("east", "west"):
        deleted = [key for name, key in journal if name == store]
        for snapshot_id in old:
            keys = [k for k in deleted if k.startswith(snapshot_prefix(PLAN, snapshot_id))]
            assert len(keys) == 3  # the manifest and two artifacts
            assert keys[0] == manifest_key(PLAN, snapshot_id)


def test_a_prune_cut_short_leaves_no_manifest_pointing_at_deleted_objects(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    catalog: Catalog,
) -> None:
    resources = make_resources(two_regions, retention={"keep_last": 1})
    doomed, survivor = backup_at(resources, at(0)), backup_at(resources, at(1))
    journal: list[tuple[str, str]] = []
    east = RecordingStore(resources.stores[0], journal, fail_at=2)  # the first artifact
    resources.stores[0] = east

    result = prune(resources)

    assert result.outcome == "degraded"
    assert result.error is not None and "east: store east: connection reset" in result.error
    assert result.stores[1].ok and held(resources, "west") == [survivor]
    assert held(resources, "east") == [survivor]  # the manifest went first
    assert east.list(snapshot_prefix(PLAN, doomed)) != []  # leftovers, without a manifest
    assert copy_status(catalog, doomed, "east") == "deleted"
    for snapshot_id in held(resources, "east"):
        manifest = resources.repository.open_manifest(east, snapshot_id).manifest
        for artifact in manifest.artifacts:
            assert artifact.encrypted is not None
            assert east.size(artifact.encrypted.key) == artifact.encrypted.size


def test_dry_run_says_what_would_go_and_why_the_rest_stays_and_changes_nothing(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    catalog: Catalog,
    tmp_path: Path,
) -> None:
    resources = make_resources(two_regions, retention={"keep_last": 2})
    ids = [backup_at(resources, at(day)) for day in range(4)]
    before = tree(tmp_path / "stores")
    copies_before = [s.copies for s in catalog.list_snapshots(PLAN)]

    result = prune(resources, dry_run=True)

    assert result.dry_run and result.run_id is None
    for store in result.stores:
        assert store.deleted == ids[:2]
        assert store.kept == {ids[3]: ["newest complete", "last 2"], ids[2]: ["last 2"]}
    assert describe_store(result.stores[0], dry_run=True).startswith(
        f"east: kept 2, would delete 2 ({ids[0]}, {ids[1]})"
    )
    assert tree(tmp_path / "stores") == before
    assert [s.copies for s in catalog.list_snapshots(PLAN)] == copies_before
    assert catalog.last_run(PLAN, "prune") is None


# --- the command line ----------------------------------------------------------------------------


def write_plan(tmp_path: Path, stores: list[dict[str, Any]], **extra: Any) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan_document(tmp_path, stores, **extra), sort_keys=False))
    return path


def test_cli_prints_a_line_per_store_and_exits_3_when_a_store_cannot_be_pruned(
    tmp_path: Path, backend: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("")
    stores = [
        {"name": "east", "type": "filesystem", "path": str(tmp_path / "east"), "region": "e"},
        {"name": "broken", "type": "filesystem", "path": str(not_a_folder), "region": "w"},
    ]
    plan_file = write_plan(tmp_path, stores, retention={"keep_last": 1})
    url = f"sqlite:///{tmp_path / 'cli-catalog.db'}"
    with Catalog.open(url) as catalog:
        resources = open_resources(load(plan_document(tmp_path, stores)), catalog)
        old, new = backup_at(resources, at(0)), backup_at(resources, at(1))
    capsys.readouterr()

    code = main(["--catalog", url, "prune", str(plan_file)])

    output = capsys.readouterr()
    assert code == ExitCode.DEGRADED
    assert output.out.splitlines() == [
        f"east: kept 1, deleted 1 ({old})",
        "broken: kept 0, deleted 0; FAILED",
    ]
    assert "broken could not be pruned" in output.err and "is not a folder" in output.err
    assert main(["--catalog", url, "prune", str(plan_file), "--json"]) == ExitCode.DEGRADED
    document = json.loads(capsys.readouterr().out)
    assert document["outcome"] == "degraded"
    assert document["stores"][0]["kept"] == [
        {"snapshot_id": new, "reasons": ["newest complete", "last 1"]}
    ]


def test_cli_exits_1_when_no_store_can_be_pruned_and_5_when_the_plan_is_locked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("")
    broken = [{"name": "broken", "type": "filesystem", "path": str(not_a_folder), "region": "w"}]
    plan_file = write_plan(tmp_path, broken, retention={"keep_last": 1})
    url = f"sqlite:///{tmp_path / 'cli-catalog.db'}"

    assert main(["--catalog", url, "prune", str(plan_file)]) == ExitCode.FAILED
    with Catalog.open(url) as catalog:
        catalog.acquire_lock(PLAN, "another-runner", 300)
    assert main(["--catalog", url, "prune", str(plan_file)]) == ExitCode.LOCKED
    assert "another-runner" in capsys.readouterr().err


# --- restic ------------------------------------------------------------------------------------


def replace_bulk_data(database: Path) -> None:
    """Swap in 200 kB of fresh random bytes, so every snapshot holds data of its own (no
    deduplication with the others) for restic to free once the snapshot is forgotten."""
    connection = sqlite3.connect(database)
    connection.execute("DELETE FROM orders WHERE total = -1")
    connection.execute("INSERT INTO orders (note, total) VALUES (?, -1)", (os.urandom(200_000),))
    connection.commit()
    connection.execute("VACUUM")  # no freed pages holding the previous bytes
    connection.close()


def folder_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


@pytest.mark.restic
def test_restic_store_forgets_pruned_snapshots_and_compacts_the_repository(
    make_resources: Callable[..., Resources],
    backend: dict[str, Path],
    restic_template: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    restic_binary: str,
) -> None:
    repository = tmp_path / "restic"
    subprocess.run(["cp", "-r", str(restic_template), str(repository)], check=True)
    monkeypatch.setenv("RESTIC_CACHE_DIR", str(tmp_path / "restic-cache"))
    store = {
        "name": "offsite",
        "type": "restic",
        "repository": str(repository),
        "password": f"env:{RESTIC_PASSWORD_VARIABLE}",
        "region": "eu",
    }
    resources = make_resources([store], retention={"keep_last": 1})
    ids = []
    for day in range(3):
        replace_bulk_data(backend["database"])
        ids.append(backup_at(resources, at(day)))
    commands: list[str] = []
    original = ResticStore._run_exclusive

    def spy(self: ResticStore, arguments: Any, action: str, key: str) -> None:
        commands.append(arguments[0])
        original(self, arguments, action, key)

    monkeypatch.setattr(ResticStore, "_run_exclusive", spy)
    size_before = folder_size(repository / "data")

    result = prune(resources)

    assert result.outcome == "ok", result.error
    assert result.stores[0].deleted == ids[:2] and result.stores[0].compacted
    assert commands == ["forget"] * 6 + ["prune"]  # three objects per snapshot, then compaction
    assert held(resources, "offsite") == [ids[2]]
    assert folder_size(repository / "data") < size_before - 300_000  # space came back
    assert verify(resources).ok
    checked = subprocess.run(
        [restic_binary, "check", "--repo", str(repository)],
        env={**os.environ, "RESTIC_PASSWORD": RESTIC_PASSWORD},
        capture_output=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


# --- S3 Object Lock ------------------------------------------------------------------------------


def test_lock_problems_allow_a_minute_of_rounding_and_name_the_key() -> None:
    lock = ObjectLock(mode="GOVERNANCE", days=30)
    written = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    full = written + timedelta(days=30)

    assert find_lock_problem("k", "GOVERNANCE", full - timedelta(seconds=59), lock, written) is None
    assert "only until" in str(
        find_lock_problem("k", "GOVERNANCE", full - timedelta(minutes=2), lock, written)
    )
    assert find_lock_problem("a/b.drkit", None, None, lock, written) == (
        "object a/b.drkit has no Object Lock retention"
    )
    assert "COMPLIANCE mode, not GOVERNANCE" in str(
        find_lock_problem("k", "COMPLIANCE", full, lock, written)
    )


@pytest.fixture
def locked_bucket(s3_server: str) -> str:
    import boto3

    name = f"drkit-locked-{secrets.token_hex(4)}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def locked_resources(
    make_resources: Callable[..., Resources],
    backend: dict[str, Path],
    s3_server: str,
    locked_bucket: str,
) -> Resources:
    vault = {
        "name": "vault",
        "type": "s3",
        "bucket": locked_bucket,
        "region": "us-east-1",
        "endpoint_url": s3_server,
        "object_lock": {"mode": "GOVERNANCE", "days": 1},
    }
    return make_resources([vault], retention={"keep_last": 1})


@pytest.mark.s3
def test_verify_passes_a_copy_locked_as_the_plan_says_and_reports_the_lock(
    locked_resources: Resources,
) -> None:
    backup_at(locked_resources, datetime.now(UTC))

    result = verify(locked_resources)

    assert result.ok, result.to_json()
    [check] = result.checks
    assert check.lock is not None and check.lock.startswith("GOVERNANCE until ")
    assert result.to_json()["copies"] == [check.to_json()] and check.to_json()["lock"] == check.lock


@pytest.mark.s3
@pytest.mark.parametrize(
    ("overwrite", "expected"),
    [
        ({}, "has no Object Lock retention"),
        ({"ObjectLockMode": "COMPLIANCE", "days": 2}, "locked in COMPLIANCE mode, not GOVERNANCE"),
        ({"ObjectLockMode": "GOVERNANCE", "days": 0.5}, "short of the plan's 1-day retention"),
    ],
    ids=["no-lock", "other-mode", "too-short"],
)
def test_verify_fails_the_copy_naming_an_object_not_locked_as_planned(
    locked_resources: Resources,
    s3_server: str,
    locked_bucket: str,
    overwrite: dict[str, Any],
    expected: str,
) -> None:
    import boto3

    snapshot_id = backup_at(locked_resources, datetime.now(UTC))
    [key] = [k for k in locked_resources.stores[0].list() if k.endswith("app-config.drkit")]
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    body = client.get_object(Bucket=locked_bucket, Key=key)["Body"].read()
    arguments = {}
    if overwrite:
        arguments = {
            "ObjectLockMode": overwrite["ObjectLockMode"],
            "ObjectLockRetainUntilDate": datetime.now(UTC) + timedelta(days=overwrite["days"]),
        }
    client.put_object(Bucket=locked_bucket, Key=key, Body=body, **arguments)  # a new version

    result = verify(locked_resources, snapshot_id=snapshot_id)

    [check] = result.checks
    assert not result.ok and not check.ok
    assert check.error is not None and check.error.startswith(f"store vault: object {key} ")
    assert expected in check.error


@pytest.mark.s3
def test_prune_skips_snapshots_under_object_lock_and_says_until_when(
    locked_resources: Resources,
) -> None:
    old = backup_at(locked_resources, at(0))
    new = backup_at(locked_resources, at(1))

    result = prune(locked_resources)

    [vault] = result.stores
    assert vault.ok and vault.deleted == [] and list(vault.locked) == [old]
    until = vault.locked[old]
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(days=1)
    assert f"1 skipped ({old} locked until {until.isoformat(timespec='seconds')})" in (
        describe_store(vault, dry_run=False)
    )
    assert held(locked_resources, "vault") == [old, new]

    later = prune(locked_resources, now=datetime.now(UTC) + timedelta(days=2))

    assert later.stores[0].deleted == [old] and later.stores[0].locked == {}
    assert held(locked_resources, "vault") == [new]
