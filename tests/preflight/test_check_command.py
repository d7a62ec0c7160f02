"""`drkit check`: every preflight in one run, each finding with a hint, nothing left behind in
any store, and an exit code naming the first problem."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from drkit.cli import main
from drkit.crypto import generate_keyfile
from drkit.errors import ExitCode
from tests.conftest import free_port


def write_plan(tmp_path: Path, document: dict[str, Any]) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def s3_store(name: str, bucket: str, endpoint: str) -> dict[str, str]:
    """An S3 store whose credentials come from DRKIT_TEST_S3_KEY."""
    return {
        "name": name,
        "type": "s3",
        "bucket": bucket,
        "region": "us-east-1",
        "endpoint_url": endpoint,
        "access_key_id": "env:DRKIT_TEST_S3_KEY",
        "secret_access_key": "env:DRKIT_TEST_S3_KEY",
    }


def tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.fixture
def troubled_plan(
    tmp_path: Path,
    postgres_database: str,
    postgres_server: str,
    unwritable_folder: Path,
    old_pg_dump: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """A plan with four problems at once: a passphrase that is not set, an S3 endpoint no
    one listens on, a pg_dump older than the server, and a store folder nobody can write."""
    missing = f"DRKIT_TEST_MISSING_{secrets.token_hex(4).upper()}"
    monkeypatch.delenv(missing, raising=False)
    monkeypatch.setenv("DRKIT_TEST_S3_KEY", "testing")
    key = tmp_path / "primary.key"
    generate_keyfile(key)
    good = tmp_path / "good-store"
    good.mkdir()
    document = {
        "version": 1,
        "name": "troubled",
        "sources": [{"name": "orders-db", "type": "postgresql", "url": postgres_database}],
        "keys": [
            {"name": "primary", "type": "keyfile", "path": str(key)},
            {"name": "break-glass", "type": "passphrase", "passphrase": f"env:{missing}"},
        ],
        "stores": [
            {"name": "good", "type": "filesystem", "path": str(good), "region": "a"},
            {"name": "locked", "type": "filesystem", "path": str(unwritable_folder), "region": "b"},
            s3_store("s3-down", "nowhere", f"http://127.0.0.1:{free_port()}"),
        ],
        # a scratch server: the sandbox check then needs no initdb on PATH
        "drill": {"sandbox": {"postgresql": f"{postgres_server}/"}},
    }
    return {"plan": write_plan(tmp_path, document), "missing": missing, "good": good}


def failures(findings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{f['area']} {f['subject']}": f for f in findings if f["status"] == "failed"}


def test_check_reports_a_missing_secret_a_dead_store_an_old_pg_dump_and_a_read_only_store_at_once(
    troubled_plan: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check", "--json", troubled_plan["plan"]])
    [result] = json.loads(capsys.readouterr().out)
    found = failures(result["findings"])
    missing = troubled_plan["missing"]
    assert set(found) == {
        f"secret env:{missing} (keys[1].passphrase)",
        "store locked",
        "store s3-down",
        "tool pg_dump for orders-db",
    }
    assert found[f"secret env:{missing} (keys[1].passphrase)"]["detail"] == (
        f"environment variable {missing} is not set"
    )
    assert "cannot write" in found["store locked"]["detail"]
    assert "cannot connect" in found["store s3-down"]["detail"]
    assert "13.4" in found["tool pg_dump for orders-db"]["detail"]
    assert "older than the server" in found["tool pg_dump for orders-db"]["detail"]
    assert all(finding["hint"] for finding in found.values())
    # the server itself answered, and the healthy store took (and lost) its probe
    statuses = {f"{f['area']} {f['subject']}": f["status"] for f in result["findings"]}
    assert statuses["source orders-db"] == "ok"
    assert statuses["key break-glass (passphrase)"] == "skipped"
    assert code == int(ExitCode.USAGE)  # the first problem: the missing secret
    assert not result["ok"]


def test_check_leaves_every_store_as_it_found_it(
    troubled_plan: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    good: Path = troubled_plan["good"]
    (good / "existing").write_text("kept")
    before = tree(good)
    main(["check", troubled_plan["plan"]])
    assert tree(good) == before
    output = capsys.readouterr().out
    assert "ok      store good" in output
    assert "probe file was written, read back and removed" in output


def test_check_prints_one_line_per_finding_with_hints_under_failures(
    troubled_plan: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    main(["check", troubled_plan["plan"]])
    lines = capsys.readouterr().out.splitlines()
    failed = [index for index, line in enumerate(lines) if line.startswith("FAILED")]
    assert len(failed) == 4
    assert all(lines[index + 1].strip().startswith("hint: ") for index in failed)
    assert lines[-1].startswith("troubled: 4 of ")


def test_check_passes_a_plan_whose_every_part_is_ready(
    tmp_path: Path,
    postgres_database: str,
    postgres_server: str,
    mysql_database: str,
    mysql_server: str,
    s3_server: str,
    s3_bucket: str,
    restic_binary: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    monkeypatch.setenv("DRKIT_TEST_RESTIC_PASSWORD", "correct horse")
    monkeypatch.setenv("DRKIT_TEST_S3_KEY", "testing")
    key = tmp_path / "primary.key"
    generate_keyfile(key)
    config = tmp_path / "config"
    config.mkdir()
    document = {
        "version": 1,
        "name": "ready",
        "sources": [
            {"name": "orders-db", "type": "postgresql", "url": postgres_database},
            {"name": "ledger-db", "type": "mysql", "url": mysql_database},
            {"name": "config", "type": "files", "paths": [str(config)]},
        ],
        "keys": [{"name": "primary", "type": "keyfile", "path": str(key)}],
        "stores": [
            s3_store("s3", s3_bucket, s3_server),
            {
                "name": "restic",
                "type": "restic",
                "repository": str(tmp_path / "restic-repo"),
                "password": "env:DRKIT_TEST_RESTIC_PASSWORD",
                "region": "b",
                "init": True,
            },
        ],
        "drill": {"sandbox": {"postgresql": f"{postgres_server}/", "mysql": f"{mysql_server}/"}},
    }
    code = main(["check", "--json", write_plan(tmp_path, document)])
    [result] = json.loads(capsys.readouterr().out)
    assert [f for f in result["findings"] if f["status"] == "failed"] == []
    assert code == 0 and result["ok"]
    subjects = {f"{f['area']} {f['subject'].split(' (')[0]}" for f in result["findings"]}
    assert {
        "store s3",
        "store restic",
        "source orders-db",
        "source ledger-db",
        "tool pg_dump for orders-db",
        "tool mariadb-dump for ledger-db",
        "sandbox postgresql",
        "sandbox mysql",
    } <= subjects
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    assert client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
    assert not (tmp_path / "restic-repo").exists()  # init: true creates it at the first backup


def test_check_reports_a_plan_that_does_not_load_as_one_failed_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "broken.yaml"
    plan.write_text("version: 1\nname: broken\nsorces: []\n")
    code = main(["check", "--json", str(plan)])
    [result] = json.loads(capsys.readouterr().out)
    [finding] = result["findings"]
    assert finding["area"] == "plan" and finding["status"] == "failed"
    assert "sorces: unknown field" in finding["detail"]
    assert code == int(ExitCode.USAGE)
