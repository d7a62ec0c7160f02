"""An attacker with write access to one store and no keys (issue 10). The victim store is a
filesystem folder, a bucket on moto's S3 server, or a restic repository (there the attacker
also holds restic's password: the worst case); a second, intact filesystem store holds the
same snapshots. For each tampering, restore and drill fail over to the intact store's own
manifest and restore the right snapshot's data; with every copy tampered they exit 7 naming
each store and the target is untouched; a rolled-back store is named by verify and
`snapshots --store`; and a store-only reader finds nothing of the data's shape."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drkit.errors import ExitCode
from drkit.plan.loader import load_plan
from drkit.repository.layout import manifest_key
from drkit.repository.manifest import seal_manifest
from drkit.stores import make_store
from drkit.stores.base import Store

from ..faults.conftest import Setup, make_setup
from ..faults.helpers import error_lines, json_output, run_drkit
from ..stores.conftest import (  # noqa: F401 - fixtures
    RESTIC_PASSWORD_VARIABLE,
    restic_environment,
    restic_template,
)

PLAN = "test-api"
KINDS = [
    "filesystem",
    pytest.param("s3", marks=[pytest.mark.s3, pytest.mark.slow]),
    pytest.param("restic", marks=[pytest.mark.restic, pytest.mark.slow]),
]


#: the store kind does not matter to these tests' logic: one kind is enough
only_filesystem = pytest.mark.parametrize("scene", ["filesystem"], indirect=True)


@dataclass
class Scene:
    """Two snapshots (generations 1 and 2 of the backend) in the victim and intact stores."""

    setup: Setup
    victim: Store
    intact: Store
    older: str
    newer: str
    orders: dict[str, int]  # snapshot id -> orders in it

    def manifest(self, store: Store, snapshot_id: str) -> bytes:
        return b"".join(store.get(manifest_key(PLAN, snapshot_id)))

    def forge(self, snapshot_id: str, data: bytes) -> None:
        self.victim.put(manifest_key(PLAN, snapshot_id), [data])


def victim_spec(kind: str, request: pytest.FixtureRequest, tmp: Path) -> dict[str, Any]:
    if kind == "filesystem":
        return {"type": "filesystem", "path": str(tmp / "stores" / "victim")}
    if kind == "s3":
        return {
            "type": "s3",
            "bucket": request.getfixturevalue("s3_bucket"),
            "endpoint_url": request.getfixturevalue("s3_server"),
            "prefix": "untrusted",
        }
    request.getfixturevalue("restic_environment")
    repository = tmp / "restic-repository"
    subprocess.run(["cp", "-r", str(request.getfixturevalue("restic_template")), str(repository)])
    return {
        "type": "restic",
        "repository": str(repository),
        "password": f"env:{RESTIC_PASSWORD_VARIABLE}",
    }


def add_order(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        connection.execute("INSERT INTO orders (note, total) VALUES ('generation 2', 1)")
    connection.close()
    return count_orders(database)


def count_orders(database: Path) -> int:
    connection = sqlite3.connect(database)
    try:
        return int(connection.execute("SELECT count(*) FROM orders").fetchone()[0])
    finally:
        connection.close()


@pytest.fixture(params=KINDS)
def scene(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scene]:
    monkeypatch.setenv("RESTIC_CACHE_DIR", str(tmp_path / "restic-cache"))
    stores = [
        {"name": "victim", "region": "a"} | victim_spec(request.param, request, tmp_path),
        {
            "name": "intact",
            "type": "filesystem",
            "path": str(tmp_path / "stores" / "intact"),
            "region": "b",
        },
    ]
    setup = make_setup(tmp_path, stores)
    orders = {}
    for generation in (1, 2):
        if generation == 2:
            add_order(setup.backend["database"])
        done = json_output(run_drkit(setup.catalog, "backup", "--json", str(setup.plan)))
        assert done["outcome"] == "ok", done
        orders[done["snapshot_id"]] = count_orders(setup.backend["database"])
    older, newer = sorted(orders)
    plan = load_plan(setup.plan)
    victim, intact = (make_store(spec) for spec in plan.stores)
    yield Scene(setup, victim, intact, older, newer, orders)


def restore_newest(scene: Scene, target: Path, *extra: str, catalog: str | None = None) -> Any:
    """`drkit restore` of the newest snapshot's database into ``target`` (no catalog unless
    given: an empty catalog makes drkit trust nothing but the stores)."""
    empty = f"sqlite:///{scene.setup.tmp / 'empty-catalog.db'}"
    return run_drkit(
        catalog or empty,
        "restore",
        "--yes",
        "--json",
        str(scene.setup.plan),
        "--source",
        "app-db",
        "--to",
        f"app-db={target}",
        *extra,
    )


@pytest.mark.parametrize("tampering", ["older-manifest-copied-over", "flipped-bit", "garbage"])
def test_restore_fails_over_to_the_intact_manifest_and_restores_the_newest_data(
    scene: Scene, tampering: str, tmp_path: Path
) -> None:
    if tampering == "older-manifest-copied-over":
        forged = scene.manifest(scene.victim, scene.older)
    elif tampering == "flipped-bit":
        damaged = bytearray(scene.manifest(scene.victim, scene.newer))
        damaged[len(damaged) // 2] ^= 0x01
        forged = bytes(damaged)
    else:
        forged = b'{"format": 1, "plan": "test-api"}'
    scene.forge(scene.newer, forged)

    target = tmp_path / "restored.db"
    completed = restore_newest(scene, target)

    assert completed.returncode == 0, completed.stderr
    document = json_output(completed)
    assert document["snapshot_id"] == scene.newer
    assert document["items"][0]["store"] == "intact" and document["items"][0]["verified"]
    assert "victim" in document["untrusted_stores"]
    assert count_orders(target) == scene.orders[scene.newer]
    assert "Traceback" not in completed.stderr


def test_every_copy_tampered_exits_7_naming_each_store_and_touches_nothing(
    scene: Scene, tmp_path: Path
) -> None:
    scene.forge(scene.newer, scene.manifest(scene.victim, scene.older))
    scene.intact.put(manifest_key(PLAN, scene.newer), [b"\x00" * 64])
    target = tmp_path / "restored.db"

    completed = restore_newest(scene, target, "--snapshot", scene.newer)

    assert completed.returncode == ExitCode.INTEGRITY, completed.stderr
    [line] = error_lines(completed.stderr)
    assert "victim:" in line and "intact:" in line
    assert not target.exists()
    assert "Traceback" not in completed.stderr


@only_filesystem
def test_a_forged_newest_snapshot_does_not_block_the_restore_of_the_real_one(
    scene: Scene, tmp_path: Path
) -> None:
    """With the catalog gone, drkit picks the newest snapshot the stores list: a newer one that
    no store can prove is skipped, not restored and not an obstacle."""
    fake = scene.newer[:-6] + "ffffff"
    scene.forge(fake.replace(scene.newer[:4], "2099"), scene.manifest(scene.victim, scene.newer))
    target = tmp_path / "restored.db"
    completed = restore_newest(scene, target)
    assert completed.returncode == 0, completed.stderr
    assert json_output(completed)["snapshot_id"] == scene.newer
    assert count_orders(target) == scene.orders[scene.newer]


@only_filesystem
def test_a_manifest_resealed_differently_is_refused_where_the_catalog_recorded_another(
    scene: Scene, tmp_path: Path
) -> None:
    """Someone holding a key re-seals the manifest (authentic, but not what was written at
    backup time): the catalog's recorded hash catches it on restore, not only on verify."""
    plan = load_plan(scene.setup.plan)
    from drkit.actions.resources import open_resources

    repository = open_resources(plan, None).repository
    opened = repository.open_manifest(scene.victim, scene.newer)
    scene.forge(scene.newer, seal_manifest(opened.manifest, repository.keys))
    target = tmp_path / "restored.db"

    completed = restore_newest(scene, target, catalog=scene.setup.catalog)

    assert completed.returncode == 0, completed.stderr
    document = json_output(completed)
    assert document["items"][0]["store"] == "intact"
    assert "recorded at backup time" in document["untrusted_stores"]["victim"]


def test_drill_fails_over_restores_the_newest_and_reports_the_tampered_copy(
    scene: Scene,
) -> None:
    """The drill proves recovery from the intact copy (its fingerprint checks pass), and
    fails on the check that names the tampered copy: a broken store must page someone."""
    scene.forge(scene.newer, scene.manifest(scene.victim, scene.older))
    catalog = scene.setup.catalog
    drilled = run_drkit(catalog, "drill", "--json", str(scene.setup.plan))
    assert drilled.returncode == ExitCode.FAILED, drilled.stderr
    [drill] = json_output(drilled)
    assert drill["snapshot_id"] == scene.newer and drill["store"] == "intact"
    checks = {check["name"]: check for check in drill["checks"]}
    assert checks["fingerprint app-db"]["passed"] and checks["fingerprint app-config"]["passed"]
    assert not checks["copy victim of app-db"]["passed"]
    assert "describes snapshot" in checks["copy victim of app-db"]["detail"]
    alone = run_drkit(catalog, "drill", "--json", "--store", "victim", str(scene.setup.plan))
    assert alone.returncode == ExitCode.FAILED, alone.stderr
    [failed] = json_output(alone)
    assert "victim" in failed["error"] and failed["outcome"] == "failed"
    assert failed["checks"] == []  # nothing was loaded from an unproven copy


def test_a_rolled_back_store_is_named_by_verify_and_snapshots(scene: Scene) -> None:
    scene.victim.delete(manifest_key(PLAN, scene.newer))
    plan = str(scene.setup.plan)
    verified = run_drkit(scene.setup.catalog, "verify", plan)
    assert verified.returncode == ExitCode.INTEGRITY, verified.stdout + verified.stderr
    assert "store victim lacks 1 snapshot(s) that intact holds" in verified.stdout
    listed = run_drkit(None, "snapshots", "--store", "victim", plan)
    assert listed.returncode == 0, listed.stderr
    assert "store victim lacks 1 snapshot(s) that intact holds" in listed.stderr
    assert scene.older in listed.stdout and scene.newer not in listed.stdout


@only_filesystem
def test_a_forged_time_never_reaches_the_catalog(scene: Scene, tmp_path: Path) -> None:
    """The 0.1.0 hole: a manifest dated in the future made `status` report a negative RPO.
    Moving the sealed header's time breaks its seal: a rebuild records the intact store's
    copy with the true time and reports the victim's."""
    data = scene.manifest(scene.victim, scene.newer)
    year = scene.newer[:4].encode()
    scene.forge(scene.newer, data.replace(b'"taken_at":"' + year, b'"taken_at":"2099', 1))
    fresh = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    rebuilt = run_drkit(fresh, "catalog", "rebuild", "--json", str(scene.setup.plan))
    assert rebuilt.returncode == 0, rebuilt.stderr
    problems = json_output(rebuilt)["problems"]
    assert any(p.startswith(f"victim {scene.newer}: ") for p in problems), problems
    status = json_output(run_drkit(fresh, "status", "--json", str(scene.setup.plan)))
    [plan_status] = status if isinstance(status, list) else [status]
    assert plan_status["newest_complete_snapshot"] == scene.newer
    assert plan_status["rpo_seconds"] >= 0


@pytest.mark.s3
def test_a_bucket_reader_finds_no_path_table_count_or_hash(
    tmp_path: Path, s3_server: str, s3_bucket: str
) -> None:
    import boto3

    stores = [
        {
            "name": "bucket",
            "type": "s3",
            "region": "a",
            "bucket": s3_bucket,
            "endpoint_url": s3_server,
        }
    ]
    setup = make_setup(tmp_path, stores)
    done = json_output(run_drkit(setup.catalog, "backup", "--json", str(setup.plan)))
    assert done["outcome"] == "ok", done
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert any(key.endswith("manifest.json") for key in keys)
    config = setup.backend["config"]
    revealing = [
        "orders",
        "customers",
        "app.yaml",
        "conf.d",
        str(config).lstrip("/"),
        str(count_orders(setup.backend["database"])),
        *(json.dumps(path.name) for path in config.rglob("*")),
    ]
    import hashlib

    revealing += [hashlib.sha256(p.read_bytes()).hexdigest() for p in config.rglob("*.yaml")]
    for key in keys:
        body = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        for word in revealing:
            assert word.encode() not in body, (key, word)
