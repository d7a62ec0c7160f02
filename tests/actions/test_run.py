"""The job runner: what is due at several simulated times, one runner per plan, stale locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from drkit.actions.run import (
    DEFAULT_TIMEOUTS,
    JobDecision,
    JobOutcome,
    choose_jobs,
    decide_due,
    last_run_times,
    run_plan,
)
from drkit.catalog import Catalog
from drkit.errors import ExitCode
from drkit.outcome import Outcome

from .conftest import load, plan_document


def due_jobs(plan_schedule: dict[str, str], last: dict[str, str | None], now: str) -> list[str]:
    plan = load(
        plan_document(
            Path("/tmp"),
            [{"name": "a", "type": "filesystem", "path": "/tmp/x", "region": "r"}],
            schedule=plan_schedule,
        )
    )
    last_runs = {job: datetime.fromisoformat(at) if at else None for job, at in last.items()}
    return [d.job for d in decide_due(plan, last_runs, datetime.fromisoformat(now)) if d.due]


SCHEDULE = {"backup": "0 * * * *", "drill": "30 3 * * 1", "verify": "0 4 * * *"}


@pytest.mark.parametrize(
    ("now", "last", "expected"),
    [
        # never ran: everything scheduled is due, prune follows the backup
        ("2026-11-30T10:05:00+00:00", {}, ["backup", "prune", "verify", "drill"]),
        # backup ran at 10:00, now 10:05: nothing new fired
        (
            "2026-11-30T10:05:00+00:00",
            {
                "backup": "2026-11-30T10:00:01+00:00",
                "drill": "2026-11-30T03:30:00+00:00",
                "verify": "2026-11-30T04:00:00+00:00",
            },
            [],
        ),
        # 11:00 fired since the last backup
        (
            "2026-11-30T11:00:30+00:00",
            {
                "backup": "2026-11-30T10:00:01+00:00",
                "drill": "2026-11-30T03:30:00+00:00",
                "verify": "2026-11-30T04:00:00+00:00",
            },
            ["backup", "prune"],
        ),
        # Monday 03:30 drill fired since last week's drill; the verify at 04:00 not yet
        (
            "2026-11-30T03:31:00+00:00",
            {
                "backup": "2026-11-30T03:00:01+00:00",
                "drill": "2026-11-23T03:30:05+00:00",
                "verify": "2026-11-29T04:00:00+00:00",
            },
            ["drill"],
        ),
        # Tuesday 04:02: verify fired; the drill ran Monday
        (
            "2026-12-01T04:02:00+00:00",
            {
                "backup": "2026-12-01T04:00:02+00:00",
                "drill": "2026-11-30T03:30:05+00:00",
                "verify": "2026-11-30T04:00:00+00:00",
            },
            ["verify"],
        ),
    ],
)
def test_due_jobs_at_simulated_times(
    now: str, last: dict[str, str | None], expected: list[str]
) -> None:
    assert due_jobs(SCHEDULE, last, now) == expected


def drkit(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def plan_file(tmp_path: Path, backend: dict[str, Path], two_regions: list[dict[str, Any]]) -> Path:
    document = plan_document(
        tmp_path,
        two_regions,
        schedule={"backup": "0 * * * *", "drill": "30 3 * * 1"},
        retention={"keep_last": 3},
    )
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_run_due_runs_backup_prune_and_drill_then_nothing(plan_file: Path, tmp_path: Path) -> None:
    catalog = f"sqlite:///{tmp_path / 'runner.db'}"
    first = drkit("--catalog", catalog, "run", "--due", "--json", str(plan_file))
    assert first.returncode == 0, first.stderr
    ran = {(o["job"], o["outcome"]) for o in json.loads(first.stdout)}
    assert {("backup", "ok"), ("prune", "ok"), ("drill", "ok")} <= ran
    second = drkit("-v", "--catalog", catalog, "run", "--due", "--json", str(plan_file))
    assert second.returncode == 0
    assert {o["outcome"] for o in json.loads(second.stdout)} == {"skipped"}
    assert "not due" in second.stderr or "ran " in second.stderr  # -v: why each was skipped


def test_dry_run_at_a_future_time_says_what_would_run(plan_file: Path, tmp_path: Path) -> None:
    catalog = f"sqlite:///{tmp_path / 'runner.db'}"
    assert drkit("--catalog", catalog, "run", "--job", "backup", str(plan_file)).returncode == 0
    later = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).isoformat()
    soon = drkit(
        "--catalog", catalog, "run", "--due", "--dry-run", "--json", "--now", later, str(plan_file)
    )
    assert soon.returncode == 0
    outcomes = {o["job"]: o["outcome"] for o in json.loads(soon.stdout)}
    assert outcomes["backup"] == "skipped"
    next_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).timestamp() + 3600
    future = datetime.fromtimestamp(next_hour + 60, UTC).isoformat()
    later_run = drkit(
        "--catalog", catalog, "run", "--due", "--dry-run", "--json", "--now", future, str(plan_file)
    )
    assert {o["job"]: o["outcome"] for o in json.loads(later_run.stdout)}["backup"] == "would run"


def test_second_runner_exits_with_the_lock_code(plan_file: Path, tmp_path: Path) -> None:
    catalog_url = f"sqlite:///{tmp_path / 'runner.db'}"
    with Catalog.open(catalog_url) as catalog:
        catalog.acquire_lock("test-api", "other-host:123:abc", lease_seconds=600)
    blocked = drkit("--catalog", catalog_url, "run", "--job", "backup", str(plan_file))
    assert blocked.returncode == ExitCode.LOCKED
    assert "other-host:123:abc" in blocked.stdout + blocked.stderr


def test_concurrent_runners_one_runs_the_other_is_locked_out(
    tmp_path: Path, backend: dict[str, Path], two_regions: list[dict[str, Any]]
) -> None:
    # a drill whose command check takes 3 s keeps the winner busy while the other starts
    document = plan_document(
        tmp_path, two_regions, drill={"checks": [{"type": "command", "run": ["sleep", "3"]}]}
    )
    plan_file = tmp_path / "slow-plan.yaml"
    plan_file.write_text(yaml.safe_dump(document, sort_keys=False))
    catalog_url = f"sqlite:///{tmp_path / 'runner.db'}"
    Catalog.open(catalog_url).close()  # migrate once, so both start on equal terms
    assert drkit("--catalog", catalog_url, "backup", str(plan_file)).returncode == 0
    args = [
        sys.executable,
        "-m",
        "drkit",
        "--catalog",
        catalog_url,
        "run",
        "--job",
        "drill",
        str(plan_file),
    ]
    runners = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(runner.wait(timeout=120), runner.communicate()) for runner in runners]
    assert sorted(code for code, _ in results) == [ExitCode.OK, ExitCode.LOCKED], results
    [(_, (locked_out, _))] = [r for r in results if r[0] == ExitCode.LOCKED]
    assert "locked" in locked_out


def test_stale_lock_of_a_killed_runner_is_taken_over(plan_file: Path, tmp_path: Path) -> None:
    catalog_url = f"sqlite:///{tmp_path / 'runner.db'}"
    with Catalog.open(catalog_url) as catalog:
        catalog.acquire_lock("test-api", "dead-host:999:zzz", lease_seconds=0.5)
    time.sleep(1.0)
    taken = drkit("--catalog", catalog_url, "run", "--job", "backup", str(plan_file))
    assert taken.returncode == 0, taken.stderr
    assert "took over the lock of dead-host:999:zzz" in taken.stderr
    with Catalog.open(catalog_url) as catalog:
        assert (
            catalog.read_lock("test-api") is None
            or catalog.read_lock("test-api").owner != "dead-host:999:zzz"
        )  # type: ignore[union-attr]


def test_a_job_over_its_timeout_fails_and_says_so(plan_file: Path, tmp_path: Path) -> None:
    catalog_url = f"sqlite:///{tmp_path / 'runner.db'}"
    timed = drkit(
        "--catalog",
        catalog_url,
        "run",
        "--job",
        "backup",
        "--timeout",
        "backup=0.001s",
        str(plan_file),
    )
    assert timed.returncode == ExitCode.FAILED
    assert "did not finish within" in timed.stdout


def test_a_runner_that_lost_its_lease_does_not_run_its_next_job(
    make_resources: Any, two_regions: list[dict[str, Any]], backend: dict[str, Path]
) -> None:
    resources = make_resources(two_regions)
    catalog = resources.catalog
    plan = resources.plan.name

    def take_over(outcome: JobOutcome) -> None:
        # what another runner does while this one is paused past its lease
        holder = catalog.read_lock(plan)
        catalog.release_lock(plan, holder.owner)
        catalog.acquire_lock(plan, "other-host:1:new", lease_seconds=600)

    decisions = [JobDecision("backup", True, "asked for"), JobDecision("prune", True, "asked for")]
    outcomes = run_plan(
        resources, decisions, lease_seconds=300, timeouts=DEFAULT_TIMEOUTS, on_job=take_over
    )
    assert [(o.job, o.outcome) for o in outcomes] == [
        ("backup", Outcome.OK),
        ("prune", Outcome.LOCKED),
    ]
    assert "other-host:1:new" in outcomes[1].reason
    assert catalog.list_runs(plan, "prune") == []
    lock = catalog.read_lock(plan)
    assert lock is not None and lock.owner == "other-host:1:new"  # not released by the loser


def test_the_due_decision_is_made_again_under_the_lock(
    make_resources: Any, two_regions: list[dict[str, Any]], backend: dict[str, Path]
) -> None:
    """Two runners both saw the backup due; the second to get the lock finds it done."""
    resources = make_resources(two_regions, schedule={"backup": "0 * * * *"})
    now = datetime.now(UTC)
    seen_before = last_run_times(resources)
    first_look = choose_jobs(resources.plan, seen_before, now, due=True, jobs=(), with_drill=False)
    assert [d.job for d in first_look if d.due] == ["backup", "prune"]

    def decide() -> list[JobDecision]:
        return choose_jobs(
            resources.plan, last_run_times(resources), now, due=True, jobs=(), with_drill=False
        )

    first = run_plan(
        resources, first_look, lease_seconds=300, timeouts=DEFAULT_TIMEOUTS, decide_again=decide
    )
    second = run_plan(
        resources, first_look, lease_seconds=300, timeouts=DEFAULT_TIMEOUTS, decide_again=decide
    )
    ran = {o.job: o.outcome for o in first if o.outcome is not Outcome.SKIPPED}
    assert ran == {"backup": Outcome.OK, "prune": Outcome.OK}
    assert {o.outcome for o in second} == {Outcome.SKIPPED}
    assert len(resources.catalog.list_runs(resources.plan.name, "backup")) == 1


def test_workers_run_the_due_plans_in_children_and_gather_their_outcomes(
    tmp_path: Path, backend: dict[str, Path], two_regions: list[dict[str, Any]]
) -> None:
    folder = tmp_path / "plans"
    folder.mkdir()
    for name in ("api-a", "api-b", "api-c"):
        document = plan_document(tmp_path, two_regions, schedule={"backup": "0 * * * *"})
        document["name"] = name
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    catalog_url = f"sqlite:///{tmp_path / 'runner.db'}"
    ran = drkit("--catalog", catalog_url, "run", "--due", "--workers", "2", "--json", str(folder))
    assert ran.returncode == 0, ran.stderr
    outcomes = {(o["plan"], o["job"]): o["outcome"] for o in json.loads(ran.stdout)}
    for name in ("api-a", "api-b", "api-c"):
        assert outcomes[(name, "backup")] == "ok" and outcomes[(name, "prune")] == "ok"
    with Catalog.open(catalog_url) as catalog:
        backups = catalog.list_runs(kind="backup")
    assert len(backups) == 3
    assert len({run.pid for run in backups}) == 3  # each plan in a child of its own
    again = drkit("--catalog", catalog_url, "run", "--due", "--workers", "2", "--json", str(folder))
    assert {o["outcome"] for o in json.loads(again.stdout)} == {"skipped"}
