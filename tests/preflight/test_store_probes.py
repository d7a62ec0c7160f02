"""Each store's probe proves it reachable and writable and leaves nothing behind; where a
write would leave something (Object Lock) it does not write, and says so."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import boto3
import pytest

from drkit.errors import StoreUnavailable
from drkit.plan.schema import FilesystemStore as FilesystemSpec
from drkit.plan.schema import ResticStore as ResticSpec
from drkit.plan.schema import S3Store as S3Spec
from drkit.stores.filesystem import FilesystemStore
from drkit.stores.restic import ResticStore, local_repository_path
from drkit.stores.s3 import S3Store
from tests.stores.conftest import RESTIC_PASSWORD_VARIABLE, restic_spec


def filesystem(path: Path) -> FilesystemStore:
    return FilesystemStore(FilesystemSpec(name="fs", type="filesystem", path=str(path), region="a"))


def s3(endpoint: str, bucket: str, **fields: object) -> S3Store:
    spec = S3Spec(
        name="s3", type="s3", bucket=bucket, region="us-east-1", endpoint_url=endpoint, **fields
    )
    return S3Store(spec, max_attempts=1)


def everything_in(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_filesystem_probe_writes_and_removes_a_file(tmp_path: Path) -> None:
    (tmp_path / "snapshot").write_text("kept")
    detail = filesystem(tmp_path).probe()
    assert "written, read back and removed" in detail
    assert everything_in(tmp_path) == ["snapshot"]


def test_filesystem_probe_of_a_missing_folder_creates_nothing(tmp_path: Path) -> None:
    detail = filesystem(tmp_path / "not" / "yet").probe()
    assert "does not exist yet" in detail and str(tmp_path) in detail
    assert everything_in(tmp_path) == []


def test_filesystem_probe_refuses_a_folder_it_cannot_write(unwritable_folder: Path) -> None:
    with pytest.raises(StoreUnavailable, match="cannot write a probe file") as raised:
        filesystem(unwritable_folder).probe()
    assert "writable for the user drkit runs as" in raised.value.hint
    assert everything_in(unwritable_folder) == []


def test_filesystem_probe_refuses_a_missing_folder_under_an_unwritable_one(
    unwritable_folder: Path,
) -> None:
    with pytest.raises(StoreUnavailable, match="cannot be created"):
        filesystem(unwritable_folder / "store").probe()


def test_s3_probe_in_a_versioned_bucket_leaves_no_version_and_no_delete_marker(
    s3_server: str,
) -> None:
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    bucket = f"drkit-probe-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    detail = s3(s3_server, bucket, prefix="plans/").probe()
    assert "written, read back and removed" in detail
    versions = client.list_object_versions(Bucket=bucket)
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []


def test_s3_probe_does_not_write_into_an_object_lock_bucket(s3_server: str) -> None:
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    bucket = f"drkit-probe-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    detail = s3(s3_server, bucket).probe()
    assert "writing not probed" in detail
    assert client.list_object_versions(Bucket=bucket).get("Versions", []) == []


def test_s3_probe_of_a_missing_bucket_says_so(s3_server: str) -> None:
    with pytest.raises(StoreUnavailable, match="does not exist"):
        s3(s3_server, f"drkit-none-{secrets.token_hex(4)}").probe()


def test_restic_probe_opens_the_repository_without_leaving_a_lock(
    local_restic_repository: Path,
) -> None:
    before = everything_in(local_restic_repository)
    detail = ResticStore(restic_spec(str(local_restic_repository))).probe()
    assert "opens with its password" in detail and "writable" in detail
    assert everything_in(local_restic_repository) == before


def test_restic_probe_names_a_wrong_password(
    local_restic_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESTIC_PASSWORD_VARIABLE, "not the password")
    with pytest.raises(StoreUnavailable, match="wrong password"):
        ResticStore(restic_spec(str(local_restic_repository))).probe()


def test_restic_probe_accepts_a_missing_repository_it_may_create(
    tmp_path: Path, restic_environment: None, restic_binary: str
) -> None:
    spec: ResticSpec = restic_spec(str(tmp_path / "new-repository"), init=True)
    assert ResticStore(spec).probe() == (
        f"does not exist yet; the first backup creates it in {tmp_path} (writable)"
    )
    assert not (tmp_path / "new-repository").exists()


def test_restic_probe_refuses_a_missing_repository_it_could_not_create(
    tmp_path: Path, restic_environment: None, restic_binary: str
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(locked)], check=True)
    else:
        locked.chmod(0o555)
    try:
        spec: ResticSpec = restic_spec(str(locked / "new-repository"), init=True)
        with pytest.raises(StoreUnavailable, match=f"{locked} is not a writable folder"):
            ResticStore(spec).probe()
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locked)], check=False)
        locked.chmod(0o755)


def test_restic_probe_refuses_a_local_repository_it_cannot_write(
    local_restic_repository: Path,
) -> None:
    locks = local_restic_repository / "locks"
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(locks)], check=True)
    else:
        locks.chmod(0o555)
    try:
        with pytest.raises(StoreUnavailable, match="cannot write in"):
            ResticStore(restic_spec(str(local_restic_repository))).probe()
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locks)], check=False)
        locks.chmod(0o755)


def test_local_repository_path_tells_local_folders_from_other_backends() -> None:
    assert local_repository_path("/srv/restic") == Path("/srv/restic")
    assert local_repository_path("local:/srv/restic") == Path("/srv/restic")
    assert local_repository_path("s3:https://s3.amazonaws.com/bucket") is None
    assert local_repository_path("sftp:user@host:/srv/restic") is None
