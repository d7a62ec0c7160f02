"""The filesystem store beyond the shared contract: error mapping, temporary files, folders."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from drkit.errors import ObjectNotFound, StoreFull, StoreUnavailable
from drkit.plan.schema import FilesystemStore as FilesystemSpec
from drkit.stores.faults import FaultyStore, disk_full
from drkit.stores.filesystem import TEMP_SUFFIX, FilesystemStore
from tests.conftest import fill_disk

KEY = "orders/snapshots/20260101T000000Z-abc123/orders-db.drkit"


def make_store(path: Path) -> FilesystemStore:
    return FilesystemStore(
        FilesystemSpec(name="disk", type="filesystem", region="on-prem", path=str(path))
    )


def every_file(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def failing_with(code: int) -> Callable[..., int]:
    def fail(*_: object) -> int:
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_while_writing_raises_store_full_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    store = make_store(tmp_path / "store")
    monkeypatch.setattr(os, "write", failing_with(code))

    with pytest.raises(StoreFull, match=r"orders-db\.drkit"):
        store.put(KEY, [b"data"])

    assert every_file(tmp_path) == []


def test_a_full_disk_reported_at_fsync_raises_store_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "store")
    monkeypatch.setattr(os, "fsync", failing_with(errno.ENOSPC))  # NFS reports here

    with pytest.raises(StoreFull):
        store.put(KEY, [b"data"])

    assert every_file(tmp_path) == []


def test_a_real_full_disk_raises_store_full_leaves_nothing_and_the_store_works_once_freed(
    small_disk: Callable[[int], Path],
) -> None:
    disk = small_disk(1024 * 1024)
    store = make_store(disk / "store")
    store.put("orders/first", [b"kept"])  # the folder exists before the disk fills
    filler = fill_disk(disk)
    data = os.urandom(256 * 1024)

    with pytest.raises(StoreFull, match=r"orders-db\.drkit"):
        store.put(KEY, [data[:65536], data[65536:]])

    assert every_file(disk / "store") == ["orders/first"]
    filler.unlink()
    store.put(KEY, [data])
    assert b"".join(store.get(KEY)) == data


def test_other_write_errors_raise_store_unavailable_not_store_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "store")
    monkeypatch.setattr(os, "write", failing_with(errno.EIO))

    with pytest.raises(StoreUnavailable) as raised:
        store.put(KEY, [b"data"])

    assert not isinstance(raised.value, StoreFull)
    assert "Input/output error" in str(raised.value)


def test_disk_full_midway_through_a_stream_leaves_nothing(tmp_path: Path) -> None:
    store = FaultyStore(
        make_store(tmp_path / "store"), fail_put_after_bytes=100_000, error=disk_full()
    )

    with pytest.raises(StoreFull):
        store.put(KEY, [os.urandom(64 * 1024) for _ in range(4)])

    assert every_file(tmp_path) == []


def test_list_skips_temporary_files_of_unfinished_writes(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.put(KEY, [b"data"])
    (tmp_path / KEY).with_name(f".orders-db.drkit.x1y2{TEMP_SUFFIX}").write_bytes(b"partial")

    assert store.list() == [KEY]


def test_the_folder_is_created_by_the_first_put_not_before(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    store = make_store(root)

    assert store.list() == []  # a missing folder reads as an empty store (unmounted share)
    with pytest.raises(ObjectNotFound):
        store.size(KEY)
    assert not root.exists()

    store.put(KEY, [b"data"])

    assert (root / KEY).read_bytes() == b"data"


def test_a_root_that_is_a_file_is_unavailable_not_empty(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    store = make_store(tmp_path / "file")

    with pytest.raises(StoreUnavailable, match="not a folder"):
        store.list()


def test_delete_removes_folders_it_emptied_but_not_the_root(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    store.put(KEY, [b"data"])
    store.put("orders/keep.json", [b"{}"])

    store.delete(KEY)

    assert not (tmp_path / "store" / "orders" / "snapshots").exists()
    assert store.list() == ["orders/keep.json"]
    store.delete("orders/keep.json")
    assert (tmp_path / "store").is_dir()


def test_objects_are_private_files_written_whole(tmp_path: Path) -> None:
    store = make_store(tmp_path)

    store.put(KEY, iter([b"a" * 10, b"b" * 10]))

    assert (tmp_path / KEY).read_bytes() == b"a" * 10 + b"b" * 10
    assert (tmp_path / KEY).stat().st_mode & 0o077 == 0


def test_keys_naming_temporary_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="temporary"):
        make_store(tmp_path).put(f"a/b{TEMP_SUFFIX}", [b"x"])


def test_list_prefix_cannot_escape_the_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_store(tmp_path / "store").list("../")
