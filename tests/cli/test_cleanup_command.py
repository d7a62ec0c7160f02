"""`drkit cleanup`, and the same sweep every command on a plan does first: what a killed drkit
left (a staging folder, a running child, its runs) is listed by --dry-run without change,
removed afterwards, and a killed drill counts as a failure in the compliance report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from drkit.catalog import Catalog
from drkit.cli import main
from drkit.leases import registry
from drkit.leases.processes import is_process_alive

from ..leases.helpers import die_after

PLAN = {
    "version": 1,
    "name": "payments",
    "sources": [{"name": "app-db", "type": "sqlite", "path": "/nonexistent/app.db"}],
    "keys": [{"name": "k", "type": "keyfile", "path": "/nonexistent/k.key"}],
    "stores": [{"name": "local", "type": "filesystem", "path": "/nonexistent", "region": "r"}],
}


@pytest.fixture
def killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A drkit process of plan payments killed during a drill: its run left running, a
    staging folder of the plan, a scratch folder with a child still running."""
    monkeypatch.setenv("DRKIT_HOME", str(tmp_path / "home"))
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    plan = tmp_path / "payments.yaml"
    plan.write_text(yaml.safe_dump(PLAN))
    die_after(
        f"""
        from pathlib import Path
        from drkit import execute, leases
        from drkit.catalog import Catalog
        Catalog.open({catalog!r}).start_run("payments", "drill")
        held = [leases.private_directory("drkit-restore-", parent={str(tmp_path)!r},
                                         plan="payments"), leases.private_scratch()]
        for folder in held:
            folder.__enter__()
        child = execute.Process(execute.Command(("sleep", "60")), stdout=False)
        Path({str(tmp_path / "child")!r}).write_text(str(child.pid))
        """,
        tmp_path,
    )
    return {"catalog": catalog, "plan": str(plan), "child": int((tmp_path / "child").read_text())}


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_cleanup_dry_run_lists_then_cleanup_removes_and_closes_the_run(
    killed: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog, plan = str(killed["catalog"]), str(killed["plan"])
    code, listed = run_json(capsys, "--catalog", catalog, "cleanup", plan, "--dry-run", "--json")
    assert code == 0 and listed["dry_run"] is True
    leftovers = listed["leftovers"]
    assert isinstance(leftovers, list)
    assert sorted(item["kind"] for item in leftovers) == ["directory", "process"]
    assert {item["state"] for item in leftovers} == {"would be removed"}
    assert [run["kind"] for run in listed["interrupted_runs"]] == ["drill"]  # type: ignore[index]
    assert is_process_alive(int(str(killed["child"])))
    with Catalog.open(catalog) as opened:
        assert opened.list_runs("payments")[0].outcome == "running"

    code, done = run_json(capsys, "--catalog", catalog, "cleanup", plan, "--json")
    assert code == 0
    assert {item["state"] for item in done["leftovers"]} == {"removed"}  # type: ignore[union-attr]
    assert not is_process_alive(int(str(killed["child"])))
    assert not list(tmp_path.glob("drkit-restore-*")) and not list(registry.list_leases())
    with Catalog.open(catalog) as opened:
        assert opened.list_runs("payments")[0].outcome == "interrupted"
    assert main(["--catalog", catalog, "cleanup", plan]) == 0
    assert "nothing left behind" in capsys.readouterr().out


def test_the_next_report_on_the_plan_sweeps_and_counts_the_killed_drill_as_a_failure(
    killed: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    catalog, plan = str(killed["catalog"]), str(killed["plan"])
    assert main(["--catalog", catalog, "report", plan, "--format", "json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    [failure] = report["failures"]
    assert failure["kind"] == "drill" and failure["outcome"] == "interrupted"
    assert report["drills"]["interrupted"] == 1
    assert not is_process_alive(int(str(killed["child"])))
    assert not list(registry.list_leases())
