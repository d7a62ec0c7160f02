"""A store failing in the middle of a backup: a connection reset or a full disk after N bytes
(FaultyStore, in process), a manifest write that fails, moto's S3 server stopped mid-backup,
and broken stores through the CLI. Outcomes follow the copy policy, each failed store gets one
line naming it, nothing half-written looks complete, and leftovers are removed where the store
can still be reached."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from drkit.actions.backup import backup
from drkit.actions.resources import Resources
from drkit.actions.restore import RestoreRequest, prepare_restore
from drkit.catalog import Catalog
from drkit.errors import ExitCode, SnapshotNotFound, StoreError
from drkit.outcome import Outcome
from drkit.repository import find_snapshots
from drkit.repository.layout import MANIFEST_NAME, snapshot_prefix
from drkit.repository.locate import snapshots_from_stores
from drkit.stores.base import Store
from drkit.stores.faults import FaultyStore, connection_reset, disk_full

from ..conftest import free_port, is_port_open
from .conftest import Setup, filesystem_stores, make_setup
from .helpers import committed_snapshots, json_output, run_drkit

BIG_FILE_SIZE = 2 * 1024 * 1024  # the config artifact spans several 1 MiB chunks
FAIL_AFTER = 1024 * 1024  # more than the SQLite artifact, less than the config artifact


@pytest.fixture
def big_config(backend: dict[str, Path]) -> dict[str, Path]:
    """The backend, its config folder holding 2 MiB of random bytes (incompressible)."""
    (backend["config"] / "certificates.bin").write_bytes(os.urandom(BIG_FILE_SIZE))
    return backend


def wrap(resources: Resources, name: str, wrapper: Callable[[Store], Store]) -> Resources:
    resources.stores = [wrapper(s) if s.name == name else s for s in resources.stores]
    return resources


def snapshot_files(root: Path, snapshot_id: str) -> list[Path]:
    folder = root / snapshot_prefix("test-api", snapshot_id)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize(
    ("fault", "leftovers_removed"),
    [(connection_reset, False), (disk_full, True)],
    ids=["connection-reset", "disk-full"],
)
def test_store_failing_mid_stream_degrades_and_commits_nothing_there(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    big_config: dict[str, Path],
    catalog: Catalog,
    tmp_path: Path,
    fault: Callable[[], StoreError],
    leftovers_removed: bool,
) -> None:
    resources = wrap(
        make_resources(two_regions),
        "east",
        lambda store: FaultyStore(store, error=fault(), fail_put_after_bytes=FAIL_AFTER),
    )
    result = backup(resources)
    assert result.outcome is Outcome.DEGRADED
    [east] = [s for s in result.stores if not s.ok]
    assert east.store == "east" and east.error == fault().message
    assert result.error == f"east: {fault().message}"
    east_root, west_root = tmp_path / "stores" / "east", tmp_path / "stores" / "west"
    assert committed_snapshots(east_root) == {}
    assert list(committed_snapshots(west_root)) == [result.snapshot_id]
    assert not list(east_root.rglob("*.drkit-partial"))
    # The SQLite artifact reached east before the failure: removed only where east answers.
    remaining = [p.name for p in snapshot_files(east_root, result.snapshot_id)]
    assert remaining == ([] if leftovers_removed else ["app-db.drkit"])
    record = catalog.get_snapshot(result.snapshot_id)
    assert record is not None and record.status == "complete"
    assert record.complete_stores() == ["west"]
    assert [e.stores for e in find_snapshots(resources.repository, resources.catalog)] == [["west"]]


class FailingManifestStore(FaultyStore):
    """Fails only the manifest's put: the failure just before the commit point."""

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        if key.endswith("/" + MANIFEST_NAME):
            self._break_after(chunks, 0)  # consume nothing, as a refused request would
            raise self._fresh_error()
        return super().put(key, chunks)


def test_failed_manifest_write_leaves_no_snapshot_and_cleans_the_artifacts(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
) -> None:
    resources = wrap(
        make_resources(two_regions, copies={"min_stores": 2, "min_regions": 1}),
        "west",
        lambda store: FailingManifestStore(store, error=disk_full()),
    )
    result = backup(resources)
    assert result.outcome is Outcome.FAILED  # the policy wants both stores
    assert [(s.store, s.ok) for s in result.stores] == [("east", True), ("west", False)]
    west_root = tmp_path / "stores" / "west"
    assert committed_snapshots(west_root) == {}
    assert snapshot_files(west_root, result.snapshot_id) == []  # west answers: cleaned up
    # east holds a whole, committed copy, but the run failed: nothing offers it as complete
    assert [
        (e.stores, e.status) for e in find_snapshots(resources.repository, resources.catalog)
    ] == [(["east"], "incomplete")]
    with pytest.raises(SnapshotNotFound):
        prepare_restore(resources, RestoreRequest())


def test_every_store_failing_fails_the_backup_with_nothing_committed(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    big_config: dict[str, Path],
    catalog: Catalog,
    tmp_path: Path,
) -> None:
    resources = make_resources(two_regions)
    resources.stores = [
        FaultyStore(s, error=disk_full(), fail_put_after_bytes=FAIL_AFTER) for s in resources.stores
    ]
    result = backup(resources)
    assert result.outcome is Outcome.FAILED
    assert all(not s.ok and s.error == disk_full().message for s in result.stores)
    for name in ("east", "west"):
        root = tmp_path / "stores" / name
        assert committed_snapshots(root) == {}
        assert snapshot_files(root, result.snapshot_id) == []
    assert [r.status for r in catalog.list_snapshots("test-api")] in ([], ["incomplete"])
    with pytest.raises(SnapshotNotFound):
        prepare_restore(resources, RestoreRequest())


# --- moto's S3 server stopped mid-backup ---------------------------------------------------


class OwnMotoServer:
    """A moto server this test may stop and start again on the same port (moto keeps its
    state in the process, so the bucket survives)."""

    def __init__(self) -> None:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        deadline = time.monotonic() + 10
        while not is_port_open("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "moto did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def moto() -> Iterator[OwnMotoServer]:
    server = OwnMotoServer()
    server.start()
    yield server
    server.stop()


@pytest.mark.s3
def test_s3_server_stopped_mid_backup_degrades_and_commits_nothing_there(
    make_resources: Callable[..., Resources],
    big_config: dict[str, Path],
    tmp_path: Path,
    moto: OwnMotoServer,
) -> None:
    bucket = "drkit-faults-s3-down"
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    stores = [
        {"name": "s3", "type": "s3", "bucket": bucket, "region": "us-east-1"}
        | {"endpoint_url": moto.url},
        *filesystem_stores(tmp_path, "disk"),
    ]
    resources = make_resources(stores)

    def stop_during_config(source: str, size: int) -> None:
        if source == "app-config" and size >= FAIL_AFTER and moto.server is not None:
            moto.stop()

    result = backup(resources, progress=stop_during_config)
    assert moto.server is None, "the server was not stopped mid-backup"
    assert result.outcome is Outcome.DEGRADED
    [failed] = [s for s in result.stores if not s.ok]
    assert failed.store == "s3" and failed.error is not None
    assert failed.error.startswith("s3 store s3: cannot ") and "\n" not in failed.error
    moto.start()  # back up: what did the outage leave?
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not [key for key in keys if key.endswith(MANIFEST_NAME)], keys
    assert snapshots_from_stores(resources.repository, [resources.stores[0].name]) == []
    again = backup(resources)
    assert again.outcome is Outcome.OK, again.error


# --- through the CLI ---------------------------------------------------------------------------


@pytest.fixture
def broken_setup(tmp_path: Path) -> Setup:
    """Three stores: one healthy, one whose folder is a file, one S3 endpoint nobody serves."""
    (tmp_path / "not-a-folder").write_text("a file where the store's folder should be")
    stores = [
        *filesystem_stores(tmp_path, "east"),
        {"name": "west", "type": "filesystem", "path": str(tmp_path / "not-a-folder")}
        | {"region": "west"},
        {"name": "s3", "type": "s3", "bucket": "nowhere", "region": "us-east-1"}
        | {"endpoint_url": f"http://127.0.0.1:{free_port()}"},
    ]
    return make_setup(tmp_path, stores)


@pytest.mark.s3
def test_cli_exit_codes_follow_the_copy_policy_with_one_line_per_failed_store(
    broken_setup: Setup,
) -> None:
    environment = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    degraded = run_drkit(broken_setup.catalog, "backup", str(broken_setup.plan), env=environment)
    assert degraded.returncode == ExitCode.DEGRADED, degraded.stderr
    failed_lines = [line for line in degraded.stderr.splitlines() if "failed:" in line]
    assert len(failed_lines) == 2, degraded.stderr
    assert failed_lines[0].startswith("  store west (west) failed: filesystem store west: ")
    assert failed_lines[1].startswith("  store s3 (us-east-1) failed: s3 store s3: ")
    assert "Traceback" not in degraded.stderr
    assert "-> degraded" in degraded.stdout

    strict = broken_setup.rewrite(
        "strict.yaml",
        stores=broken_setup.document["stores"][:2],  # S3 retries cost seconds; once is enough
        copies={"min_stores": 2, "min_regions": 1},
    )
    failed = run_drkit(broken_setup.catalog, "backup", "--json", str(strict), env=environment)
    assert failed.returncode == ExitCode.FAILED, failed.stderr
    document = json_output(failed)
    assert document["outcome"] == "failed"
    assert [(s["store"], s["ok"]) for s in document["stores"]] == [("east", True), ("west", False)]
    assert all("\n" not in (s["error"] or "") for s in document["stores"])
    with Catalog.open(broken_setup.catalog) as catalog:
        statuses = {r.id: r.status for r in catalog.list_snapshots("test-api")}
    assert statuses[document["snapshot_id"]] == "incomplete"
    listed = run_drkit(broken_setup.catalog, "snapshots", "--json", str(strict))
    shown = {e["snapshot_id"]: e["status"] for e in json_output(listed)}
    assert shown.get(document["snapshot_id"], "incomplete") == "incomplete"
