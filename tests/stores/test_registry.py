"""Building stores from a plan: the name -> factory table, the retry wrapper, lazy SDKs, keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drkit.plan.schema import Plan
from drkit.stores import STORE_FACTORIES, check_key, make_store, make_stores
from drkit.stores.filesystem import FilesystemStore
from drkit.stores.restic import ResticStore
from drkit.stores.retry import RetryingStore
from drkit.stores.s3 import S3Store


def make_plan(tmp_path: Path) -> Plan:
    return Plan.model_validate(
        {
            "version": 1,
            "name": "orders",
            "sources": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "db.sqlite")}],
            "keys": [{"name": "primary", "type": "keyfile", "path": str(tmp_path / "key")}],
            "stores": [
                {"name": "use1", "type": "s3", "bucket": "orders-dr", "region": "us-east-1"},
                {
                    "name": "nfs",
                    "type": "filesystem",
                    "path": str(tmp_path / "nfs"),
                    "region": "on-prem",
                },
                {
                    "name": "offsite",
                    "type": "restic",
                    "repository": str(tmp_path / "restic"),
                    "password": "env:RESTIC_PASSWORD",
                    "region": "eu-central-1",
                },
            ],
        }
    )


def test_every_store_type_of_the_schema_has_a_factory() -> None:
    assert sorted(STORE_FACTORIES) == ["filesystem", "restic", "s3"]


def test_make_store_builds_the_implementation_the_spec_names(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)

    stores = [make_store(spec) for spec in plan.stores]

    assert [type(store) for store in stores] == [S3Store, FilesystemStore, ResticStore]
    assert [store.name for store in stores] == ["use1", "nfs", "offsite"]
    assert [store.wants_plaintext for store in stores] == [False, False, True]


def test_make_stores_wraps_every_store_in_retries_in_plan_order(tmp_path: Path) -> None:
    stores = make_stores(make_plan(tmp_path))

    assert all(isinstance(store, RetryingStore) for store in stores)
    assert [store.name for store in stores] == ["use1", "nfs", "offsite"]


def test_boto3_is_imported_only_for_s3_stores(tmp_path: Path) -> None:
    program = (
        "import sys\n"
        "from drkit.plan.schema import FilesystemStore\n"
        "from drkit.stores import make_store\n"
        f"store = make_store(FilesystemStore(name='nfs', type='filesystem', path={str(tmp_path)!r},"
        " region='on-prem'))\n"
        "store.list()\n"
        "assert 'boto3' not in sys.modules, 'boto3 was imported'\n"
    )
    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("key", ["orders/manifest.json", "a", "a/b.c/d-e_f"])
def test_relative_slash_separated_keys_are_valid(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key", ["", "/a", "a/../b", "..", "a//b", "a/./b", "a/", "a\\b", "a\nb", "a\x00b"]
)
def test_absolute_dotted_or_odd_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="invalid store key"):
        check_key(key)
