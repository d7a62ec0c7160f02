"""Monitoring that cannot lie: a real Pushgateway takes repeated pushes of every job kind,
with counters and histograms; verify runs are recorded, scheduled once, exported, and a
damaged copy makes `status` exit 4; every writing command takes the plan's lock (or waits
for it); a usage error leaves no trace in the audit trail."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from drkit.actions.backup import backup
from drkit.actions.drill import drill
from drkit.actions.prune import prune
from drkit.actions.resources import open_resources
from drkit.actions.verify import verify
from drkit.catalog import Catalog
from drkit.cli import main
from drkit.errors import ExitCode
from drkit.monitoring.metrics import collect_metrics, push_metrics
from drkit.plan.schema import Plan
from tests.actions.conftest import plan_document

JOBS = ("backup", "prune", "verify", "drill")


def write_plan(tmp_path: Path, stores: list[dict[str, Any]], **extra: Any) -> Path:
    path = tmp_path / "plans" / "api.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(plan_document(tmp_path, stores, **extra), sort_keys=False))
    return path


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_real_pushgateway_accepts_repeated_pushes_of_every_job_kind(
    make_plan: Callable[..., Plan], backend: dict[str, Path], catalog: Catalog, pushgateway: str
) -> None:
    plan = make_plan(retention={"keep_last": 1})
    resources = open_resources(plan, catalog)
    for _ in range(2):
        assert backup(resources).outcome.value == "ok"
    assert prune(resources).outcome.value == "ok"
    assert verify(resources).ok
    [drilled] = drill(resources)
    assert drilled.outcome.value == "ok"

    for _ in range(3):  # one push per run in a day of `drkit run`: each replaces the group
        assert push_metrics(collect_metrics(catalog, [plan]), pushgateway) == []
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10) as response:
        found = samples(response.read().decode())

    def one(name: str, **labels: str) -> float:
        return found[(name, frozenset({"job": "drkit", "instance": "", **labels}.items()))]

    for job in JOBS:
        labels = {"plan": plan.name, "drkit_job": job, "outcome": "ok"}
        assert one("drkit_runs_total", **labels) == (2 if job == "backup" else 1)
        assert one("drkit_run_duration_seconds_count", **labels) == one(
            "drkit_runs_total", **labels
        )
        assert one("drkit_run_duration_seconds_bucket", le="+Inf", **labels) >= 1
        assert one("drkit_last_run_outcome", plan=plan.name, drkit_job=job, outcome="ok") == 1
    backups = {"plan": plan.name, "drkit_job": "backup", "outcome": "ok"}
    assert one("drkit_written_bytes_total", **backups) > 0
    assert one("drkit_objective_breached", plan=plan.name) == 0


def damage_copy(store_folder: Path) -> None:
    """Flip a byte in the middle of every artifact object in one store."""
    objects = [p for p in store_folder.rglob("*") if p.is_file() and "manifest" not in p.name]
    assert objects
    for path in objects:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


def test_a_copy_verify_found_damaged_makes_status_exit_4(
    stores: list[dict[str, Any]],
    backend: dict[str, Path],
    catalog: Catalog,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan_file = write_plan(tmp_path, stores)
    base = ["--catalog", catalog.url]
    assert main([*base, "backup", str(plan_file)]) == 0
    assert main([*base, "status", str(plan_file)]) == 0
    damage_copy(Path(stores[1]["path"]))
    capsys.readouterr()
    assert main([*base, "verify", str(plan_file)]) == ExitCode.INTEGRITY

    [run] = catalog.list_runs("test-api", "verify")
    assert run.outcome == "failed" and run.error and stores[1]["name"] in run.error
    assert main([*base, "status", "--json", str(plan_file)]) == ExitCode.OBJECTIVE_BREACHED
    printed = capsys.readouterr().out
    assert "failed verification" in printed and "last verify failed" in printed


def test_a_scheduled_verify_runs_once_per_window(
    stores: list[dict[str, Any]], backend: dict[str, Path], catalog: Catalog, tmp_path: Path
) -> None:
    plan_file = write_plan(
        tmp_path, stores, schedule={"backup": "0 0 1 1 *", "verify": "0 4 * * *"}
    )
    base = ["--catalog", catalog.url, "run", "--due", str(plan_file)]
    assert main(base) == 0
    assert main(base) == 0
    assert [run.outcome for run in catalog.list_runs("test-api", "verify")] == ["ok"]


def test_backup_beside_a_held_lock_is_locked_out_or_waits_for_it(
    stores: list[dict[str, Any]], backend: dict[str, Path], catalog: Catalog, tmp_path: Path
) -> None:
    plan_file = write_plan(tmp_path, stores)
    catalog.acquire_lock("test-api", "cron-host:1:run", lease_seconds=600)
    base = ["--catalog", catalog.url, "backup", str(plan_file)]
    assert main(base) == ExitCode.LOCKED
    assert catalog.list_runs("test-api", "backup") == []  # nothing ran beside the holder

    released = threading.Timer(1.0, catalog.release_lock, ("test-api", "cron-host:1:run"))
    released.start()
    started = time.monotonic()
    try:
        assert main([*base[:-1], "--wait-for-lock", "1m", str(plan_file)]) == 0
    finally:
        released.join()
    assert time.monotonic() - started >= 1.0
    [run] = catalog.list_runs("test-api", "backup")
    assert run.outcome == "ok"
    assert catalog.read_lock("test-api") is None  # released after the backup


@pytest.mark.parametrize("command", ["drill", "prune", "restore"])
def test_drill_prune_and_restore_to_the_origin_take_the_plan_lock(
    command: str,
    stores: list[dict[str, Any]],
    backend: dict[str, Path],
    catalog: Catalog,
    tmp_path: Path,
) -> None:
    plan_file = write_plan(tmp_path, stores)
    assert main(["--catalog", catalog.url, "backup", str(plan_file)]) == 0
    catalog.acquire_lock("test-api", "cron-host:1:run", lease_seconds=600)
    extra = ["--yes", "--force"] if command == "restore" else []
    assert main(["--catalog", catalog.url, command, *extra, str(plan_file)]) == ExitCode.LOCKED
    assert catalog.list_runs("test-api", command) == []


def test_a_mistyped_store_never_enters_the_audit_trail(
    stores: list[dict[str, Any]], backend: dict[str, Path], catalog: Catalog, tmp_path: Path
) -> None:
    plan_file = write_plan(tmp_path, stores)
    assert main(["--catalog", catalog.url, "backup", str(plan_file)]) == 0
    for command in ("drill", "verify"):
        code = main(["--catalog", catalog.url, command, "--store", "nosuch", str(plan_file)])
        assert code == ExitCode.USAGE
        assert catalog.list_runs("test-api", command) == []
    assert catalog.list_drills("test-api") == []
