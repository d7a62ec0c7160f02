"""Drills, status and reports on the serverless backend: checks pass, a difference fails
naming the table, a 1s RTO objective is breached with its exit code, sandboxes are removed."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drkit.actions.backup import backup
from drkit.actions.drill import drill
from drkit.actions.resources import Resources
from drkit.catalog import Catalog
from drkit.cli.drill import drill_exit_code
from drkit.errors import ExitCode
from drkit.outcome import Outcome
from drkit.report.compliance import plan_report
from drkit.report.render import render_html, render_markdown
from drkit.report.status import plan_status

SQL_CHECK = {
    "type": "sql",
    "source": "app-db",
    "query": "SELECT count(*) FROM orders",
    "expect": "= 300",
}


def drill_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("drkit-*")}


def test_drill_passes_every_check_and_is_recorded(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    catalog: Catalog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # only this test's leftovers count
    before = drill_dirs()
    resources = make_resources(two_regions, drill={"checks": [{"type": "fingerprint"}, SQL_CHECK]})
    backup(resources)
    [result] = drill(resources)
    assert result.outcome is Outcome.OK, result.to_json()
    assert [c.name for c in result.checks] == [
        "fingerprint app-db",
        "fingerprint app-config",
        "sql app-db: SELECT count(*) FROM orders",
    ]
    assert result.checks[2].measured == 300
    assert result.rto_seconds is not None and result.rto_seconds > 0
    assert set(result.phases) == {"provision", "fetch", "decrypt", "load", "checks"}
    assert drill_exit_code([result]) == ExitCode.OK
    [recorded] = catalog.list_drills("test-api")
    assert recorded.outcome == Outcome.OK and recorded.snapshot_id == result.snapshot_id
    assert len(recorded.checks) == 3
    assert drill_dirs() <= before


def lose_a_row_on_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite restores lose customer 1 after loading: a restore that is not faithful."""
    from drkit.sources import sqlite as sqlite_source

    original = sqlite_source.SqliteDatabase.restore

    def restore_then_lose_a_row(
        self: Any, stream: Any, target: Any, *, replace: bool = False, captured: Any = None
    ) -> None:
        original(self, stream, target, replace=replace, captured=captured)
        connection = sqlite3.connect(target.location)
        connection.execute("DELETE FROM customers WHERE id = 1")
        connection.commit()
        connection.close()

    monkeypatch.setattr(sqlite_source.SqliteDatabase, "restore", restore_then_lose_a_row)


@pytest.mark.parametrize(
    "checks",
    [None, [SQL_CHECK], []],
    ids=["default checks", "sql check only", "no checks listed"],
)
def test_drill_of_altered_data_fails_and_names_the_table(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    checks: list[dict[str, str]] | None,
) -> None:
    """Whatever the plan's drill lists, the restore's fingerprint comparison fails the drill."""
    resources = make_resources(
        two_regions, **({} if checks is None else {"drill": {"checks": checks}})
    )
    backup(resources)
    lose_a_row_on_restore(monkeypatch)
    [result] = drill(resources)
    assert result.outcome == "failed"
    [failed] = [c for c in result.checks if not c.passed]
    assert "customers" in failed.detail and "expected 20, found 19" in failed.detail
    assert drill_exit_code([result]) == ExitCode.FAILED


def test_rto_objective_of_one_second_is_breached_with_the_amount(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    resources = make_resources(two_regions, objectives={"rpo": "1h", "rto": "1s"})
    backup(resources)
    from drkit.sources import sqlite as sqlite_source

    original = sqlite_source.SqliteDatabase.restore

    def slow_restore(
        self: Any, stream: Any, target: Any, *, replace: bool = False, captured: Any = None
    ) -> None:
        time.sleep(1.2)  # a load slower than the objective
        original(self, stream, target, replace=replace, captured=captured)

    monkeypatch.setattr(sqlite_source.SqliteDatabase, "restore", slow_restore)
    [result] = drill(resources)
    assert result.outcome == "breached"
    [breach] = result.breaches
    assert breach.startswith("RTO ") and "exceeds the objective 1.00s by" in breach
    assert drill_exit_code([result]) == ExitCode.OBJECTIVE_BREACHED


def test_drill_one_store_without_failover_and_all_stores(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
) -> None:
    resources = make_resources(two_regions)
    backup(resources)
    for path in (tmp_path / "stores" / "west").rglob("app-db.drkit"):
        path.write_bytes(path.read_bytes()[:-1])
    results = drill(resources, all_stores=True)
    assert [(r.store, r.outcome) for r in results] == [
        ("east", Outcome.OK),
        ("west", Outcome.FAILED),
    ]
    assert "corrupt" in (results[1].error or "")


def test_status_and_reports_show_the_recorded_figures(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    catalog: Catalog,
) -> None:
    from datetime import UTC, datetime, timedelta

    resources = make_resources(two_regions, schedule={"backup": "0 * * * *"})
    taken = backup(resources)
    [drilled] = drill(resources)
    status = plan_status(catalog, resources.plan)
    assert status.newest_complete is not None and status.newest_complete.id == taken.snapshot_id
    assert status.newest_verified is not None and not status.breached
    assert status.last_drill is not None and status.last_drill.rto_seconds == pytest.approx(
        drilled.rto_seconds
    )
    report = plan_report(catalog, resources.plan, datetime.now(UTC) - timedelta(days=1))
    assert report["backups"]["taken"] == 1 and report["backups"]["complete"] == 1
    assert report["backups"]["due"] in (0, 1)  # due only since the plan's first run
    assert report["copies_per_region"] == {"east": 1, "west": 1}
    assert report["encryption"]["key_names"] == ["primary"]
    assert report["drills"]["run"] == 1 and report["drills"]["passed"] == 1
    assert report["drills"]["rto_max_seconds"] == pytest.approx(drilled.rto_seconds)
    assert report["evidence"][0]["snapshot_id"] == taken.snapshot_id
    assert report["evidence"][0]["manifest_sha256"]
    json.dumps(report)
    markdown = render_markdown([report])
    assert taken.snapshot_id in markdown and "RTO p50 / p95 / max" in markdown
    page = render_html([report])
    assert page.count("<svg") == 2 and taken.snapshot_id in page


@pytest.mark.parametrize(
    "objectives", [{"rpo": "1h", "rto": "10m"}, None], ids=["objectives", "no objectives"]
)
def test_status_breaches_when_no_snapshot_meets_the_copy_policy(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    catalog: Catalog,
    tmp_path: Path,
    objectives: dict[str, str] | None,
) -> None:
    stores = [
        *two_regions[:1],
        {
            "name": "broken",
            "type": "filesystem",
            "path": str(backend["database"]),
            "region": "west",
        },
    ]
    resources = make_resources(
        stores, copies={"min_stores": 2, "min_regions": 2}, objectives=objectives
    )
    result = backup(resources)
    assert result.outcome.value == "failed"
    status = plan_status(catalog, resources.plan)
    assert status.breached and "no snapshot meets the copy policy" in status.breaches


def test_status_without_objectives_is_breached_by_a_failed_drill(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources = make_resources(two_regions, objectives=None)
    backup(resources)
    assert plan_status(catalog, resources.plan).breaches == []
    lose_a_row_on_restore(monkeypatch)
    [result] = drill(resources)
    assert result.outcome == "failed"
    status = plan_status(catalog, resources.plan)
    assert status.breached and status.breaches == ["last drill failed"]


def test_backups_due_are_counted_from_the_cron_schedule() -> None:
    from datetime import UTC, datetime

    from drkit.report.compliance import count_due

    start = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    assert count_due("0 * * * *", start, datetime(2026, 11, 2, 0, 0, tzinfo=UTC)) == 24
    assert count_due("30 3 * * 1", start, datetime(2026, 12, 1, tzinfo=UTC)) == 5  # Mondays 2-30
    assert count_due(None, start, start) is None
