"""Keys going wrong, through the CLI: a wrong key file, a missing one, a wrong passphrase, and
AWS KMS unreachable. Any one working key restores; when none works, `drkit restore` and
`drkit verify` exit 8 with one line saying why and a hint, and touch nothing."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from drkit.crypto import generate_keyfile
from drkit.errors import ExitCode

from ..conftest import free_port
from .conftest import Setup, filesystem_stores, make_setup
from .helpers import committed_snapshots, error_lines, json_output, run_drkit

pytestmark = pytest.mark.s3
PASSPHRASE_VARIABLE = "DRKIT_FAULTS_BREAK_GLASS"


@pytest.fixture(scope="module")
def kms_key(s3_server: str) -> str:
    """A KMS key on moto's server (the same endpoint serves KMS)."""
    kms = boto3.client("kms", endpoint_url=s3_server, region_name="us-east-1")
    return str(kms.create_key(Description="drkit faults")["KeyMetadata"]["Arn"])


def kms(key_id: str, endpoint: str) -> dict[str, Any]:
    return {"name": "kms", "type": "aws-kms", "key_id": key_id, "region": "us-east-1"} | {
        "endpoint_url": endpoint
    }


def keyfile(path: Path) -> dict[str, Any]:
    return {"name": "primary", "type": "keyfile", "path": str(path)}


PASSPHRASE = {
    "name": "break-glass",
    "type": "passphrase",
    "passphrase": f"env:{PASSPHRASE_VARIABLE}",
}


@pytest.fixture(scope="module")
def backed_up(
    tmp_path_factory: pytest.TempPathFactory, s3_server: str, kms_key: str
) -> Iterator[Setup]:
    """One snapshot whose data keys are wrapped for KMS, a key file and a passphrase (shared
    by the tests of this module, which only read it)."""
    tmp_path = tmp_path_factory.mktemp("keys")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASSPHRASE_VARIABLE, "the right passphrase " + secrets.token_hex(4))
        key_path = tmp_path / "keys" / "primary.key"
        generate_keyfile(key_path)
        keys = [kms(kms_key, s3_server), keyfile(key_path), PASSPHRASE]
        setup = make_setup(tmp_path, filesystem_stores(tmp_path, "east"), keys=keys)
        completed = run_drkit(setup.catalog, "backup", "--json", str(setup.plan))
        assert completed.returncode == 0, completed.stderr
        assert json_output(completed)["outcome"] == "ok"
        yield setup


def restore(setup: Setup, plan: Path, name: str, **env: str) -> Any:
    target = setup.tmp / "restored" / name
    return run_drkit(
        setup.catalog, "restore", "--yes", str(plan),
        "--to", f"app-db={target / 'app.db'}", "--to", f"app-config={target / 'config'}",
        env=env,
    ), target  # fmt: skip


def assert_no_key_works(completed: Any, target: Path, *reasons: str) -> None:
    assert completed.returncode == ExitCode.KEY, completed.stdout + completed.stderr
    [error] = error_lines(completed.stderr)
    assert error.startswith("drkit: error: no configured key opens snapshot "), error
    for reason in reasons:
        assert reason in error, (reason, error)
    assert "\n  hint: " in completed.stderr and "Traceback" not in completed.stderr
    assert not target.exists()


def test_unreachable_kms_is_passed_over_for_the_key_file(backed_up: Setup) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    keys = [kms("alias/drkit", closed), keyfile(backed_up.tmp / "keys" / "primary.key")]
    plan = backed_up.rewrite("kms-down.yaml", keys=keys)
    completed, target = restore(backed_up, plan, "kms-down")
    assert completed.returncode == 0, completed.stderr
    assert (target / "app.db").is_file()
    assert "verified" in completed.stdout and "DIFFERS" not in completed.stdout


def test_wrong_key_file_exits_8_naming_the_key(backed_up: Setup) -> None:
    other = backed_up.tmp / "keys" / "other.key"
    generate_keyfile(other)
    plan = backed_up.rewrite("wrong-file.yaml", keys=[keyfile(other)])
    completed, target = restore(backed_up, plan, "wrong-file")
    assert_no_key_works(completed, target, "key 'primary' is a different key")


def test_missing_key_file_exits_8_naming_the_path(backed_up: Setup) -> None:
    missing = backed_up.tmp / "keys" / "gone.key"
    plan = backed_up.rewrite("missing-file.yaml", keys=[keyfile(missing)])
    completed, target = restore(backed_up, plan, "missing-file")
    # the plan's only key cannot load: the preflight stops the restore before any store is read
    assert completed.returncode == ExitCode.KEY, completed.stdout + completed.stderr
    [error] = error_lines(completed.stderr)
    assert error.startswith("drkit: error: restore of test-api not started: key primary"), error
    assert f"key file {missing} does not exist" in error
    assert "\n  hint: " in completed.stderr and "Traceback" not in completed.stderr
    assert not target.exists()


def test_wrong_passphrase_exits_8(backed_up: Setup) -> None:
    plan = backed_up.rewrite("passphrase.yaml", keys=[PASSPHRASE])
    completed, target = restore(
        backed_up, plan, "passphrase", **{PASSPHRASE_VARIABLE: "not the passphrase"}
    )
    assert_no_key_works(completed, target, "key 'break-glass' has the wrong passphrase")
    assert "not the passphrase" not in completed.stderr
    checked = run_drkit(
        backed_up.catalog, "verify", str(plan), env={PASSPHRASE_VARIABLE: "not the passphrase"}
    )
    assert checked.returncode == ExitCode.KEY, checked.stdout + checked.stderr
    assert len(error_lines(checked.stderr)) == 1


def test_no_working_key_at_all_lists_every_reason_in_one_line(backed_up: Setup) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    keys = [kms("alias/drkit", closed), keyfile(backed_up.tmp / "nowhere.key"), PASSPHRASE]
    plan = backed_up.rewrite("none.yaml", keys=keys)
    environment = {PASSPHRASE_VARIABLE: "wrong"}
    completed, target = restore(backed_up, plan, "none", **environment)
    assert_no_key_works(
        completed, target, "AWS KMS at", "nowhere.key does not exist", "wrong passphrase"
    )


def test_backup_with_a_missing_key_file_fails_and_commits_nothing(backed_up: Setup) -> None:
    missing = backed_up.tmp / "keys" / "gone.key"
    plan = backed_up.rewrite("missing-for-backup.yaml", keys=[PASSPHRASE, keyfile(missing)])
    before = committed_snapshots(backed_up.stores["east"])
    completed = run_drkit(backed_up.catalog, "backup", str(plan))
    assert completed.returncode == ExitCode.KEY, completed.stderr
    [error] = error_lines(completed.stderr)
    assert "not started: key primary" in error and str(missing) in error, completed.stderr
    assert committed_snapshots(backed_up.stores["east"]) == before
