"""What a backup that never committed leaves in stores is removed (DESIGN promise 10): by the
next drkit command on the plan when the backup's process died on this host (its lease), and
by prune once older than any backup runs when it died elsewhere (its lease is gone)."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drkit.actions.prune import prune
from drkit.actions.resources import open_resources
from drkit.plan.loader import load_plan
from drkit.repository.layout import artifact_key, new_snapshot_id

from ..faults.conftest import Setup, filesystem_stores, make_setup
from ..faults.helpers import (
    TEMP_SUFFIX,
    Observation,
    json_output,
    run_drkit,
    start_drkit,
    uncommitted_leftovers,
    watch,
)

PLAN = "test-api"


def big_setup(tmp_path: Path) -> Setup:
    """Two stores and a config tree of 8 MiB of random bytes: an upload long enough to
    interrupt half way."""
    setup = make_setup(tmp_path, filesystem_stores(tmp_path, "east", "west"))
    (setup.backend["config"] / "bundle.bin").write_bytes(os.urandom(8 << 20))
    return setup


def test_a_killed_backups_objects_are_removed_by_the_next_command(tmp_path: Path) -> None:
    setup = big_setup(tmp_path)
    process = start_drkit(setup.catalog, "backup", str(setup.plan))

    def mid_upload(seen: Observation) -> bool:
        return any(event.endswith(TEMP_SUFFIX) for event in seen.events) and seen.wchar > 3 << 20

    _, signalled = watch(process, list(setup.stores.values()), mid_upload, send=signal.SIGKILL)
    process.communicate(timeout=60)
    assert signalled and process.returncode == -signal.SIGKILL
    left = [item for root in setup.stores.values() for item in uncommitted_leftovers(root)]
    assert left, "the kill left nothing in the stores: the test proves nothing"
    assert any(item.endswith(TEMP_SUFFIX) for item in left), left

    listed = run_drkit(setup.catalog, "snapshots", "--json", str(setup.plan))

    assert listed.returncode == 0, listed.stderr
    assert json_output(listed) == []
    for root in setup.stores.values():
        assert uncommitted_leftovers(root) == []
    after = json_output(run_drkit(setup.catalog, "backup", "--json", str(setup.plan)))
    assert after["outcome"] == "ok"


def test_prune_removes_uncommitted_objects_older_than_any_backup_runs(tmp_path: Path) -> None:
    """A backup killed in a pod takes its lease with it: prune removes what it left once no
    backup could still be writing it, and leaves a recent one alone."""
    setup = make_setup(tmp_path, filesystem_stores(tmp_path, "east"))
    done = json_output(run_drkit(setup.catalog, "backup", "--json", str(setup.plan)))
    assert done["outcome"] == "ok"
    resources = open_resources(load_plan(setup.plan), None)
    store = resources.stores[0]
    now = datetime.now(UTC)
    old = new_snapshot_id(now - timedelta(days=3))
    recent = new_snapshot_id(now - timedelta(hours=1))
    for snapshot_id in (old, recent):
        store.put(artifact_key(PLAN, snapshot_id, "app-db", "drkit"), [b"half an upload"])

    preview = prune(resources, dry_run=True)
    assert preview.stores[0].leftovers == [old]
    assert store.list(f"{PLAN}/snapshots/{old}/") != []  # a dry run removes nothing

    pruned = prune(resources)

    assert pruned.stores[0].leftovers == [old]
    assert store.list(f"{PLAN}/snapshots/{old}/") == []
    assert store.list(f"{PLAN}/snapshots/{recent}/") != []
    assert resources.repository.list_snapshot_ids(store) == [done["snapshot_id"]]
