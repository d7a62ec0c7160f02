"""Leases and the sweeper: a lease names its owner precisely enough that a reused pid never
passes for it; what a process killed with SIGKILL leaves (folders, a scratch folder with a
child still running, runs left ``running``) is removed by the next sweep, and only then;
a live owner's things are never touched, two sweepers never clean one lease, a cleaner that
fails keeps its lease and says why."""

from __future__ import annotations

import fcntl
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drkit.catalog import Catalog
from drkit.leases import private_directory, registry
from drkit.leases.processes import current_identity, is_owner_alive, is_process_alive
from drkit.leases.sweeper import sweep

from .helpers import die_after


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DRKIT_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"


def test_an_owner_is_its_pid_and_start_time_on_this_host_and_boot() -> None:
    me = current_identity()
    assert is_owner_alive(me)
    assert not is_owner_alive(replace(me, start_ticks=me.start_ticks + 1))  # a reused pid
    assert not is_owner_alive(replace(me, boot_id="another-boot"))
    assert is_owner_alive(replace(me, host=socket.gethostname() + "-elsewhere", pid=1 << 30))


def test_a_live_owners_things_are_left_alone(tmp_path: Path) -> None:
    with private_directory("drkit-test-", parent=tmp_path) as folder:
        assert sweep(None) == []
        assert folder.is_dir()
        [(path, lease)] = registry.list_leases()
        assert lease.owner == current_identity() and lease.data == {"path": str(folder)}
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert list(registry.list_leases()) == []


def test_what_a_killed_process_left_is_removed_by_the_next_sweep(tmp_path: Path) -> None:
    die_after(
        f"""
        from pathlib import Path
        from drkit import execute, leases
        held = [leases.private_directory("drkit-test-", parent={str(tmp_path)!r})]
        held.append(leases.private_scratch())
        held[0].__enter__()
        scratch = held[1].__enter__()
        (scratch / "staged.pgdump").write_bytes(b"plaintext")
        child = execute.Process(execute.Command(("sleep", "60")), stdout=False)
        Path({str(tmp_path / "child")!r}).write_text(str(child.pid))
        """,
        tmp_path,
    )
    child = int((tmp_path / "child").read_text())
    left = [p for p in tmp_path.iterdir() if p.name.startswith("drkit-test-")]
    assert len(left) == 1 and is_process_alive(child)
    taken = {lease.kind: Path(lease.data["path"]) for _, lease in registry.list_leases()}
    assert set(taken) == {"directory", "process"} and taken["process"].is_dir()

    assert {item.state for item in sweep(None, dry_run=True)} == {"would be removed"}
    assert left[0].exists() and is_process_alive(child)

    swept = sweep(None)
    assert sorted(item.kind for item in swept) == ["directory", "process"]
    assert all(item.state == "removed" for item in swept)
    assert not left[0].exists() and not is_process_alive(child)
    assert list(registry.list_leases()) == []
    assert not taken["process"].exists()


def test_a_command_sweeps_its_plans_leases_and_those_of_no_plan_only(tmp_path: Path) -> None:
    die_after(
        f"""
        from drkit.leases import private_directory
        held = [
            private_directory(f"drkit-{{plan}}-", parent={str(tmp_path)!r}, plan=plan)
            for plan in ("payments", "orders", None)
        ]
        for folder in held:
            folder.__enter__()
        """,
        tmp_path,
    )
    swept = sweep({"payments": None})  # type: ignore[dict-item]
    assert sorted(str(item.plan) for item in swept) == ["None", "payments"]
    assert [p.name.split("-")[1] for p in tmp_path.glob("drkit-*")] == ["orders"]


def test_a_failing_cleaner_keeps_its_lease_and_says_why(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    die_after(
        f"""
        from drkit.leases import registry
        registry.take("scratch-mysql", "scratch databases", data={{
            "server_url": "mysql://root@127.0.0.1:{closed}/", "password": "",
            "databases": ["drkit_drill_00"], "readers": {{}}}})
        """,
        tmp_path,
    )
    [item] = sweep(None)
    assert item.state == "failed" and "cannot connect" in item.detail
    assert len(list(registry.list_leases())) == 1


def test_a_lease_another_sweeper_holds_is_skipped(tmp_path: Path) -> None:
    die_after(
        f"""
        from drkit.leases import private_directory
        held = private_directory("drkit-test-", parent={str(tmp_path)!r})
        held.__enter__()
        """,
        tmp_path,
    )
    [(path, _)] = registry.list_leases()
    with path.open() as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        assert sweep(None) == []
    assert [item.state for item in sweep(None)] == ["removed"]


def test_runs_left_running_by_dead_processes_become_interrupted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    die_after(
        f"""
        from drkit.catalog import Catalog
        Catalog.open({url!r}).start_run("payments", "backup")
        """,
        tmp_path,
    )
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with Catalog.open(url, clock=lambda: an_hour_ago) as catalog:
        catalog.start_run("payments", "drill")  # this pid, but it started later: a reused pid
    with Catalog.open(url) as catalog:
        live = catalog.start_run("payments", "restore")
        assert len(catalog.interrupt_orphaned_runs(dry_run=True)) == 2
        assert catalog.interrupt_orphaned_runs(["orders"]) == []
        interrupted = catalog.interrupt_orphaned_runs(["payments"])
        assert sorted(run.kind for run in interrupted) == ["backup", "drill"]
        runs = {run.kind: run for run in catalog.list_runs("payments")}
    assert runs["backup"].outcome == runs["drill"].outcome == "interrupted"
    assert runs["backup"].finished_at is not None and "killed" in str(runs["backup"].error)
    assert runs["restore"].id == live and runs["restore"].outcome == "running"


def test_holding_releases_after_the_block_and_keeps_the_lease_when_it_fails(
    tmp_path: Path,
) -> None:
    data = {"path": str(tmp_path / "made")}
    with registry.holding("directory", "a folder", plan="payments", data=data) as lease:
        assert lease.path.exists() and lease.plan == "payments"
    assert list(registry.list_leases()) == []
    with pytest.raises(RuntimeError), registry.holding("directory", "a folder", data=data):
        raise RuntimeError("the block failed half way")
    [(_, kept)] = registry.list_leases()
    assert kept.data == data  # for the sweeper, once this process is gone
    with pytest.raises(ValueError, match="no cleaner for lease kind 'nonsense'"):
        registry.take("nonsense", "something")
