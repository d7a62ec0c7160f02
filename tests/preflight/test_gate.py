"""The fast preflight before backup, restore and drill: a problem the command cannot survive
stops it in one line before anything is written; a problem it survives is a warning; and
what a restore does not need (the lost data itself) never stops it."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from drkit.catalog import Catalog
from drkit.cli import main
from drkit.errors import ExitCode
from tests.actions.conftest import make_backend, plan_document


@pytest.fixture
def demo(tmp_path: Path) -> dict[str, Any]:
    make_backend(tmp_path / "backend")
    stores = [
        {"name": "east", "type": "filesystem", "path": str(tmp_path / "east"), "region": "east"},
        {"name": "west", "type": "filesystem", "path": str(tmp_path / "west"), "region": "west"},
    ]
    return {"tmp": tmp_path, "stores": stores, "catalog": f"sqlite:///{tmp_path / 'catalog.db'}"}


def write(demo: dict[str, Any], document: dict[str, Any]) -> str:
    path = demo["tmp"] / "plan.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def run(demo: dict[str, Any], *args: str) -> int:
    return main(["--catalog", demo["catalog"], *args])


def missing_variable(monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"DRKIT_TEST_MISSING_{secrets.token_hex(4).upper()}"
    monkeypatch.delenv(name, raising=False)
    return name


def s3_store_without_credentials(variable: str) -> dict[str, str]:
    """An S3 store whose credentials are a variable that is not set."""
    return {
        "name": "s3",
        "type": "s3",
        "bucket": "anywhere",
        "region": "us-east-1",
        "access_key_id": f"env:{variable}",
        "secret_access_key": f"env:{variable}",
    }


def test_backup_with_a_missing_secret_stops_in_one_line_and_writes_nothing(
    demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    variable = missing_variable(monkeypatch)
    document = plan_document(demo["tmp"], demo["stores"])
    document["keys"].append(
        {"name": "break-glass", "type": "passphrase", "passphrase": f"env:{variable}"}
    )
    code = run(demo, "backup", write(demo, document))
    errors = capsys.readouterr().err.splitlines()
    assert code == int(ExitCode.USAGE)
    assert errors[0] == (
        f"drkit: error: backup of test-api not started: secret env:{variable} "
        f"(keys[1].passphrase): environment variable {variable} is not set"
    )
    assert errors[1].startswith(f"  hint: export {variable}")
    assert "drkit check" in errors[1]
    assert not (demo["tmp"] / "east").exists() and not (demo["tmp"] / "west").exists()
    with Catalog.open(demo["catalog"]) as catalog:
        assert catalog.list_runs("test-api") == []


def test_backup_goes_on_when_the_copy_policy_survives_a_store_without_its_secret(
    demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    variable = missing_variable(monkeypatch)
    stores = [demo["stores"][0], s3_store_without_credentials(variable)]
    plan = write(demo, plan_document(demo["tmp"], stores))
    code = run(demo, "backup", "--json", plan)
    captured = capsys.readouterr()
    assert code == int(ExitCode.DEGRADED)
    assert json.loads(captured.out)["outcome"] == "degraded"
    assert f"WARNING preflight: secret env:{variable} (stores[1].access_key_id)" in captured.err


def test_backup_stops_when_the_stores_left_cannot_meet_the_copy_policy(
    demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = s3_store_without_credentials(missing_variable(monkeypatch))
    document = plan_document(
        demo["tmp"], [demo["stores"][0], s3], copies={"min_stores": 2, "min_regions": 2}
    )
    code = run(demo, "backup", write(demo, document))
    assert code == int(ExitCode.USAGE)
    assert "backup of test-api not started" in capsys.readouterr().err
    assert not (demo["tmp"] / "east").exists()


def test_restore_after_the_database_file_is_lost_is_not_stopped_by_the_preflight(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write(demo, plan_document(demo["tmp"], demo["stores"]))
    assert run(demo, "backup", plan) == 0
    database = demo["tmp"] / "backend" / "app.db"
    database.unlink()  # the incident: what a backup would need is what the restore brings back
    assert run(demo, "restore", "--yes", "--source", "app-db", plan) == 0
    assert database.exists()
    assert "preflight" not in capsys.readouterr().err


def test_restore_with_no_key_that_loads_stops_before_reading_any_store(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write(demo, plan_document(demo["tmp"], demo["stores"]))
    assert run(demo, "backup", plan) == 0
    key = demo["tmp"] / "keys" / "primary.key"
    key.rename(key.with_suffix(".aside"))
    capsys.readouterr()
    code = run(demo, "restore", "--yes", "--to", f"app-db={demo['tmp'] / 'other.db'}", plan)
    errors = capsys.readouterr().err.splitlines()
    assert code == int(ExitCode.KEY)
    assert errors[0].startswith("drkit: error: restore of test-api not started: key primary")
    assert errors[-1] == "  see:  drkit runbook key-lost-or-rotated"
    assert not (demo["tmp"] / "other.db").exists()


def test_drill_of_a_mysql_source_without_a_sandbox_server_stops_before_restoring(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    sources = [{"name": "ledger", "type": "mysql", "url": "mysql://root@127.0.0.1:3306/ledger"}]
    plan = write(demo, plan_document(demo["tmp"], demo["stores"], sources=sources))
    code = run(demo, "drill", plan)
    assert code == int(ExitCode.FAILED)
    errors = capsys.readouterr().err
    assert "drill of test-api not started: sandbox mysql" in errors
    assert "drill.sandbox.mysql" in errors
