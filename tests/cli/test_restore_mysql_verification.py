"""`drkit restore` of a MariaDB source through the CLI: a restored copy whose data differs in
one value (same row count) fails verification with exit 7 naming the table."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from drkit.cli import main
from drkit.errors import ExitCode
from drkit.sources.base import Fingerprint, Restored, Target
from drkit.sources.mysql import MysqlDatabase

from ..sources.test_mysql import execute
from .conftest import two_store_setup

pytestmark = pytest.mark.mysql


@pytest.fixture
def ledger(mysql_database: str) -> str:
    execute(
        mysql_database,
        [
            "CREATE TABLE entries (id INT PRIMARY KEY, amount INT)",
            "INSERT INTO entries VALUES (1, 10), (2, 20), (3, 30)",
        ],
    )
    return mysql_database


@pytest.fixture
def elsewhere(mysql_server: str) -> Iterator[str]:
    name = f"drkit_restored_{secrets.token_hex(4)}"
    yield f"{mysql_server}/{name}"
    execute(f"{mysql_server}/", [f"DROP DATABASE IF EXISTS `{name}`"])


def test_a_restore_with_one_value_changed_exits_7_naming_the_table(
    ledger: str,
    elsewhere: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup = two_store_setup(tmp_path, sources=[{"name": "ledger", "type": "mysql", "url": ledger}])

    def run(*args: str) -> int:
        return main(["--catalog", setup["url"], *args])

    assert run("backup", setup["plan"]) == 0
    original = MysqlDatabase.restore_faithfully

    def restore_then_change_a_value(
        self: MysqlDatabase,
        stream: IO[bytes],
        target: Target,
        *,
        captured: Fingerprint,
        roles: str,
        replace: bool = False,
        private: dict[str, Any] | None = None,
    ) -> Restored:
        restored = original(
            self, stream, target, captured=captured, roles=roles, replace=replace, private=private
        )
        execute(target.location, ["UPDATE entries SET amount = 21 WHERE id = 2"])
        return restored

    monkeypatch.setattr(MysqlDatabase, "restore_faithfully", restore_then_change_a_value)
    capsys.readouterr()
    code = run("restore", "--yes", "--json", "--to", f"ledger={elsewhere}", setup["plan"])
    assert code == ExitCode.INTEGRITY
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    [item] = document["items"]
    assert not item["verified"]
    assert item["differences"] == [
        "table entries: content differs from the backup (same row count)"
    ]


def test_grants_to_an_account_the_server_lacks_are_listed_as_left_out(
    ledger: str,
    elsewhere: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = f"drkit_gone_{secrets.token_hex(4)}"
    database = ledger.rsplit("/", 1)[1]
    server = ledger.rsplit("/", 1)[0] + "/"
    execute(
        server, [f"CREATE USER `{user}`@'%'", f"GRANT SELECT ON `{database}`.* TO `{user}`@'%'"]
    )
    try:
        setup = two_store_setup(
            tmp_path, sources=[{"name": "ledger", "type": "mysql", "url": ledger}]
        )
        assert main(["--catalog", setup["url"], "backup", setup["plan"]]) == 0
        execute(server, [f"DROP USER `{user}`@'%'"])  # a server that lacks the account
        capsys.readouterr()
        arguments = ["restore", "--yes", "--to", f"ledger={elsewhere}", setup["plan"]]
        assert main(["--catalog", setup["url"], *arguments]) == 0
        out = capsys.readouterr().out
        assert f"left out: grants to `{user}`@`%`: the account does not exist" in out
    finally:
        execute(server, [f"DROP USER IF EXISTS `{user}`@'%'"])
