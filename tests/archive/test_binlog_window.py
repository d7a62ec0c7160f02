"""The recoverable window of a store for a MariaDB source, from its dumps and ledger rows
(pure): unbroken binlog from a dump's position, gaps, recorded problems."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drkit.actions.binlog_pitr import effective_moment
from drkit.actions.binlog_pitr_drill import random_whole_moment
from drkit.archive.binlog_window import BinlogDump, compute_binlog_window
from drkit.archive.window import Window
from drkit.catalog.wal import WalRecord
from drkit.errors import UsageError
from drkit.plan.schema import MysqlSource
from drkit.sources.binlog_stream import BinlogFile, make_binlog_receive_command, parse_binlog_name
from drkit.sources.mysql import make_dump_command
from drkit.sources.urls import parse_database_url

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def row(kind: str, number: int, covered: int | None = None, size: int = 500) -> WalRecord:
    return WalRecord(
        "p",
        "ledger",
        "east",
        kind,
        f"mariadb-bin.{number:06d}",
        size,
        "",
        size,
        None if covered is None else T0 + timedelta(seconds=covered),
        T0,
    )


def dump(number: int, position: int = 400, at: int = 0) -> BinlogDump:
    return BinlogDump(
        "snap", BinlogFile(number, "mariadb-bin"), position, T0 + timedelta(seconds=at)
    )


def test_the_window_runs_from_the_dump_to_the_newest_proven_moment() -> None:
    rows = [row("segment", 2), row("segment", 3), row("partial", 4, covered=30)]
    window = compute_binlog_window("east", [dump(2)], rows)
    assert window.problems == []
    assert (window.start, window.end) == (T0, T0 + timedelta(seconds=30))
    assert window.last_segment == "mariadb-bin.000004"


def test_a_missing_binlog_file_is_a_gap_and_the_window_ends_before_it() -> None:
    rows = [row("segment", 2, covered=5), row("segment", 4), row("partial", 5, covered=30)]
    window = compute_binlog_window("east", [dump(2)], rows)
    assert window.problems == ["gap: binlog mariadb-bin.000003 is missing"]
    assert window.end == T0 + timedelta(seconds=5)


def test_a_dump_whose_binlog_file_the_store_lacks_has_no_window() -> None:
    window = compute_binlog_window("east", [dump(2)], [row("partial", 3, covered=9)])
    assert window.is_empty
    assert window.problems == ["dump snap lacks binlog mariadb-bin.000002, where it starts"]


def test_problems_the_archiver_recorded_are_named() -> None:
    problem = WalRecord("p", "ledger", "east", "problem", "purged-x", 0, "", None, None, T0, "lost")
    window = compute_binlog_window("east", [dump(2)], [row("partial", 2, covered=3), problem])
    assert window.problems == ["lost"] and not window.is_empty


def test_binlog_names_and_positions_order_across_files() -> None:
    first, second = parse_binlog_name("mariadb-bin.000009"), parse_binlog_name("mariadb-bin.000010")
    assert first is not None and second is not None
    assert first.position(1 << 30) < second.position(4)
    assert parse_binlog_name("client.cnf") is None


def test_commands_ask_for_the_binlog_position_and_copy_the_binlog_raw(tmp_path: Path) -> None:
    url = parse_database_url("mysql://drkit@db:3307/ledger")
    dump_argv = make_dump_command(url, option_file=None, binlog_position=True).argv
    assert dump_argv[:7] == (
        "mariadb-dump",
        "--protocol=TCP",
        "--host=db",
        "--port=3307",
        "--user=drkit",
        "--single-transaction",
        "--master-data=2",
    )
    assert "--gtid" in dump_argv
    assert "--master-data=2" not in make_dump_command(url, option_file=None).argv
    spec = MysqlSource.model_validate(
        {"name": "ledger", "type": "mysql", "url": "mysql://drkit@db:3307/ledger", "pitr": {}}
    )
    command = make_binlog_receive_command(
        spec,
        "mariadb-bin.000004",
        tmp_path,
        server_id=3000000000,
        option_file=None,
    )
    assert command.argv == (
        "mariadb-binlog",
        "--read-from-remote-server",
        "--protocol=TCP",
        "--host=db",
        "--port=3307",
        "--user=drkit",
        "--raw",
        "--stop-never",
        "--stop-never-slave-server-id=3000000000",
        f"--result-file={tmp_path}/",
        "mariadb-bin.000004",
    )


def test_a_drill_moment_has_its_whole_second_inside_the_window() -> None:
    window = Window("east", T0 + timedelta(seconds=0.4), T0 + timedelta(seconds=2))
    chance = random.Random(3)
    for _ in range(200):
        moment = random_whole_moment(window, chance)
        assert window.start <= effective_moment(moment) and moment <= window.end  # type: ignore[operator]
    with pytest.raises(UsageError):
        random_whole_moment(
            Window("east", T0 + timedelta(seconds=0.4), T0 + timedelta(seconds=0.9)), chance
        )


def test_restore_at_picks_the_plans_only_mariadb_pitr_source_beside_others(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from drkit.actions.binlog_pitr import choose_binlog_source
    from tests.actions.conftest import load, plan_document

    stores = [{"name": "east", "type": "filesystem", "path": str(tmp_path / "e"), "region": "e"}]
    ledger = {"name": "ledger", "type": "mysql", "url": "mysql://drkit@db/ledger", "pitr": {}}
    config = {"name": "config", "type": "files", "paths": [str(tmp_path)]}
    plan = load(plan_document(tmp_path, stores, sources=[ledger, config]))
    resources: Any = SimpleNamespace(plan=plan)
    chosen = choose_binlog_source(resources, None)
    assert chosen is not None and chosen.name == "ledger"
    assert choose_binlog_source(resources, "config") is None
