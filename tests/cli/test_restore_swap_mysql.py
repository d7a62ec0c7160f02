"""Restores that cannot destroy, on the real MariaDB server: `--force` moves the loaded tables in
with one RENAME TABLE and keeps the replaced ones; a database with a trigger (which RENAME
TABLE cannot move) is loaded in place only after its copy loaded and verified; system
schemas are refused; nothing marked is left behind but the kept previous database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

from drkit.cli import main
from drkit.errors import ExitCode

from ..actions.conftest import plan_document

pytestmark = pytest.mark.mysql


def _sql(*statements: str, database: str | None = None) -> list[tuple[Any, ...]]:
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=database)
    try:
        rows: list[tuple[Any, ...]] = []
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                rows = list(cursor.fetchall())
        connection.commit()
        return rows
    finally:
        connection.close()


def _databases(prefix: str) -> set[str]:
    rows = _sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
    return {str(row[0]) for row in rows if str(row[0]).startswith(prefix)}


@pytest.fixture
def ledger(tmp_path: Path, mysql_database: str) -> Iterator[dict[str, Any]]:
    name = mysql_database.rsplit("/", 1)[1]
    _sql(
        "CREATE TABLE ledger (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(50))",
        "INSERT INTO ledger (note) VALUES ('a'), ('b'), ('c')",
        database=name,
    )
    stores = [{"name": "s", "type": "filesystem", "path": str(tmp_path / "s"), "region": "a"}]
    sources = [{"name": "ledger-db", "type": "mysql", "url": mysql_database}]
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(plan_document(tmp_path, stores, sources=sources)))
    setup = {"plan": str(plan), "catalog": f"sqlite:///{tmp_path / 'c.db'}", "name": name}
    yield setup
    for database in _databases(f"{name}_"):
        _sql(f"DROP DATABASE `{database}`")


def _backup_then_add_a_row(setup: dict[str, Any]) -> None:
    assert main(["--catalog", setup["catalog"], "backup", setup["plan"]]) == 0
    _sql("INSERT INTO ledger (note) VALUES ('after the backup')", database=setup["name"])


def _restore(setup: dict[str, Any], *args: str) -> int:
    return main(["--catalog", setup["catalog"], "restore", "--yes", *args, setup["plan"]])


def _rows(database: str) -> int:
    return int(_sql("SELECT count(*) FROM ledger", database=database)[0][0])


def test_force_moves_the_loaded_tables_in_and_keeps_the_replaced_ones(
    ledger: dict[str, Any],
) -> None:
    _backup_then_add_a_row(ledger)
    assert _restore(ledger, "--force") == 0
    assert _rows(ledger["name"]) == 3
    [previous] = _databases(f"{ledger['name']}_drkit_previous_")
    assert _rows(previous) == 4
    assert _databases(f"{ledger['name']}_drkit_restoring_") == set()


def test_a_database_with_a_trigger_is_loaded_in_place_after_a_verified_copy(
    ledger: dict[str, Any],
) -> None:
    _sql(
        "CREATE TRIGGER ledger_note BEFORE INSERT ON ledger FOR EACH ROW "
        "SET NEW.note = COALESCE(NEW.note, '')",
        database=ledger["name"],
    )
    _backup_then_add_a_row(ledger)
    assert _restore(ledger, "--force") == 0
    assert _rows(ledger["name"]) == 3
    query = "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{}'"
    triggers = _sql(query.format(ledger["name"]))
    assert triggers == [("ledger_note",)]
    assert _databases(f"{ledger['name']}_") == set()


@pytest.mark.parametrize("system", ["mysql", "information_schema"])
def test_system_schemas_are_refused(
    ledger: dict[str, Any], capsys: pytest.CaptureFixture[str], system: str
) -> None:
    assert main(["--catalog", ledger["catalog"], "backup", ledger["plan"]]) == 0
    capsys.readouterr()
    assert _restore(ledger, "--force", "--to", f"ledger-db={system}") == ExitCode.REFUSED
    assert "system database" in capsys.readouterr().err


@pytest.fixture
def grantee(ledger: dict[str, Any]) -> Iterator[str]:
    account = f"'drkit_u_{secrets.token_hex(4)}'@'localhost'"
    database = ledger["name"]
    _sql(
        f"CREATE USER {account}",
        f"GRANT SELECT ON `{database}`.* TO {account}",
        f"GRANT INSERT ON `{database}`.`ledger` TO {account}",
    )
    yield account
    _sql(f"DROP USER IF EXISTS {account}")


def _grants_left_on_copies(name: str) -> list[tuple[Any, ...]]:
    pattern = f"{name}\\_drkit\\_%"
    return _sql(
        f"SELECT Db, User FROM mysql.db WHERE Db LIKE '{pattern}'"
        f" UNION ALL SELECT Db, User FROM mysql.tables_priv WHERE Db LIKE '{pattern}'"
    )


def test_force_gives_the_swapped_in_tables_the_snapshots_grants_and_copies_keep_none(
    ledger: dict[str, Any], grantee: str
) -> None:
    # grants are kept per database name: the target must get the snapshot's after the swap
    # (here one was lost and one added after the backup), the removed copies none
    source = sorted(_sql(f"SHOW GRANTS FOR {grantee}"))
    _backup_then_add_a_row(ledger)
    database = ledger["name"]
    _sql(
        f"REVOKE INSERT ON `{database}`.`ledger` FROM {grantee}",
        f"GRANT UPDATE ON `{database}`.* TO {grantee}",
    )
    assert _restore(ledger, "--force", "--drop-previous") == 0
    assert _rows(ledger["name"]) == 3
    assert sorted(_sql(f"SHOW GRANTS FOR {grantee}")) == source
    assert _databases(f"{ledger['name']}_") == set()
    assert _grants_left_on_copies(ledger["name"]) == []
