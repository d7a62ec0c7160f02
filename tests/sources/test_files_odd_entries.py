"""The files source with each odd kind of entry: names that are not UTF-8, FIFOs, devices,
sockets, sparse files, a configured root that is a symlink, a folder or file swapped for a
symlink while the backup runs, and files that vanish while it runs."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drkit.errors import SourceError
from drkit.plan.schema import FilesSource
from drkit.sources.base import Target, compare_fingerprints
from drkit.sources.files import FileTree, member_name
from drkit.sources.tree_walk import archived_roots

IS_ROOT = os.geteuid() == 0
BAD_NAME = b"report-\xff\xfe-latin1-\xe9t\xe9.txt"
MIB = 1024 * 1024


def tree_source(*paths: Path, vanished_files: str = "warn") -> FileTree:
    spec = FilesSource(
        name="config",
        type="files",
        paths=[str(p) for p in paths],
        vanished_files=vanished_files,  # type: ignore[arg-type]
    )
    return FileTree(spec)


def capture(source: FileTree) -> tuple[bytes, dict[str, str], list[str]]:
    with source.snapshot() as captured:
        data = b"".join(captured.chunks)
        return data, captured.fingerprint["files"], captured.warnings


def restore(source: FileTree, data: bytes, target: Path) -> None:
    source.restore(io.BytesIO(data), Target(str(target)))


def verify_restore(source: FileTree, hashes: dict[str, str], target: Path) -> list[str]:
    return compare_fingerprints(
        {"files": hashes}, source.fingerprint_target(Target(str(target)), {"files": hashes})
    )


def copy_of(target: Path, original: Path) -> Path:
    return target / member_name(str(original))


@pytest.fixture
def on_open(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, Callable[[], None]], None]]:
    """Run an action once, right before drkit opens the entry of a given name: the window
    between listing a folder and opening what it listed, where real races happen."""
    real_open = os.open
    actions: dict[str, Callable[[], None]] = {}

    def racing_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if isinstance(path, str) and kwargs.get("dir_fd") is not None and path in actions:
            actions.pop(path)()
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", racing_open)
    yield lambda name, action: actions.__setitem__(name, action)


def test_a_name_that_is_not_utf8_round_trips_byte_for_byte(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    raw = os.path.join(os.fsencode(tree), BAD_NAME)
    with open(raw, "wb") as file:
        file.write(b"latin1 content\n")
    (tree / "back\\slash\nnewline.txt").write_text("odd but valid\n")
    source = tree_source(tree)
    data, hashes, warnings = capture(source)
    assert warnings == []
    escaped = [key for key in hashes if "report-" in key]
    assert escaped == [f"{member_name(str(tree))}/report-\\xff\\xfe-latin1-\\xe9t\\xe9.txt"]
    target = tmp_path / "restored"
    restore(source, data, target)
    restored = os.fsencode(copy_of(target, tree))
    assert BAD_NAME in os.listdir(restored)
    with open(os.path.join(restored, BAD_NAME), "rb") as file:
        assert file.read() == b"latin1 content\n"
    assert verify_restore(source, hashes, target) == []


def test_fifo_and_device_are_archived_as_such_and_sockets_left_out(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    os.mkfifo(tree / "pipe", 0o640)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tree / "app.sock"))
    if IS_ROOT:
        os.mknod(tree / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    source = tree_source(tree)
    try:
        data, _, _ = capture(source)  # a FIFO must never be opened: this would block
    finally:
        server.close()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {Path(info.name).name: info for info in tar.getmembers()}
    assert members["pipe"].isfifo() and "app.sock" not in members
    target = tmp_path / "restored"
    restore(source, data, target)
    copy = copy_of(target, tree)
    assert stat.S_ISFIFO(os.lstat(copy / "pipe").st_mode)
    assert stat.S_IMODE(os.lstat(copy / "pipe").st_mode) == 0o640
    if IS_ROOT:
        assert members["null"].ischr() and (members["null"].devmajor, members["null"].devminor) == (
            1,
            3,
        )
        assert os.lstat(copy / "null").st_rdev == os.makedev(1, 3)


def test_sparse_file_is_stored_and_restored_sparse(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    sparse = tree / "disk.img"
    with open(sparse, "wb") as file:
        file.truncate(64 * MIB)
        file.seek(8 * MIB)
        file.write(b"A" * 4096)
        file.seek(40 * MIB)
        file.write(b"B" * 8192)
    if os.stat(sparse).st_blocks * 512 >= 64 * MIB:
        pytest.skip("this filesystem does not keep holes")
    source = tree_source(tree)
    data, hashes, _ = capture(source)
    assert len(data) < 2 * MIB  # the holes are not in the archive
    target = tmp_path / "restored"
    restore(source, data, target)
    restored = copy_of(target, tree) / "disk.img"
    assert restored.stat().st_size == 64 * MIB
    assert restored.stat().st_blocks * 512 < MIB  # holes stayed holes
    assert restored.read_bytes() == sparse.read_bytes()
    assert verify_restore(source, hashes, target) == []


def test_a_sparse_file_ending_in_data_or_in_a_hole_reads_right_with_gnu_tar(
    tmp_path: Path,
) -> None:
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    tree = tmp_path / "src"
    tree.mkdir()
    with open(tree / "tail-hole.img", "wb") as file:
        file.truncate(16 * MIB)
        file.write(b"head")
    with open(tree / "tail-data.img", "wb") as file:
        file.seek(16 * MIB)
        file.write(b"tail")
    data, _, _ = capture(tree_source(tree))
    (tmp_path / "archive.tar").write_bytes(data)
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "archive.tar"), "-C", str(out)], check=True)
    for name in ("tail-hole.img", "tail-data.img"):
        assert (copy_of(out, tree) / name).read_bytes() == (tree / name).read_bytes(), name
    assert not any("GNUSparseFile" in str(p) for p in out.rglob("*"))


def test_a_root_that_is_a_symlink_captures_the_link_and_what_it_points_to(
    tmp_path: Path,
) -> None:
    real = tmp_path / "opt" / "app" / "conf"
    real.mkdir(parents=True)
    (real / "app.yaml").write_text("port: 1\n")
    link = tmp_path / "etc-app"
    link.symlink_to(real)
    source = tree_source(link)
    data, hashes, _ = capture(source)
    assert hashes[member_name(str(link))] == f"symlink:{real}"
    assert hashes[member_name(str(real / "app.yaml"))]
    target = tmp_path / "restored"
    restore(source, data, target)
    assert os.readlink(copy_of(target, link)) == str(real)
    assert (copy_of(target, real) / "app.yaml").read_text() == "port: 1\n"
    assert verify_restore(source, hashes, target) == []
    (copy_of(target, real) / "app.yaml").write_text("port: 2\n")
    [problem] = verify_restore(source, hashes, target)
    assert "app.yaml" in problem


def test_a_relative_root_symlink_is_followed_too(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.yaml").write_text("a\n")
    (tmp_path / "current").symlink_to("conf")
    source = tree_source(tmp_path / "current")
    data, hashes, _ = capture(source)
    assert member_name(str(tmp_path / "conf" / "a.yaml")) in hashes
    restore(source, data, tmp_path / "restored")
    assert verify_restore(source, hashes, tmp_path / "restored") == []


def test_a_folder_swapped_for_a_symlink_mid_backup_is_recorded_as_the_link(
    tmp_path: Path, on_open: Callable[[str, Callable[[], None]], None]
) -> None:
    tree = tmp_path / "src"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "inside.txt").write_text("inside\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not part of the tree\n")

    def swap() -> None:
        (tree / "sub").rename(tmp_path / "moved-away")
        (tree / "sub").symlink_to(outside)

    on_open("sub", swap)
    source = tree_source(tree)
    data, hashes, _ = capture(source)
    assert b"not part of the tree" not in data
    assert hashes[member_name(str(tree / "sub"))] == f"symlink:{outside}"
    assert not any("secret" in key for key in hashes)
    target = tmp_path / "restored"
    restore(source, data, target)
    assert os.readlink(copy_of(target, tree) / "sub") == str(outside)
    assert verify_restore(source, hashes, target) == []


def test_a_file_swapped_for_a_symlink_mid_backup_is_recorded_as_the_link(
    tmp_path: Path, on_open: Callable[[str, Callable[[], None]], None]
) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "app.yaml").write_text("mine\n")
    (tmp_path / "shadow").write_text("/etc/shadow stand-in\n")

    def swap() -> None:
        (tree / "app.yaml").unlink()
        (tree / "app.yaml").symlink_to(tmp_path / "shadow")

    on_open("app.yaml", swap)
    data, hashes, _ = capture(tree_source(tree))
    assert b"stand-in" not in data
    assert hashes[member_name(str(tree / "app.yaml"))] == f"symlink:{tmp_path / 'shadow'}"


def test_a_file_vanishing_mid_backup_is_a_warning_not_a_failure(
    tmp_path: Path, on_open: Callable[[str, Callable[[], None]], None]
) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / ".app.yaml.swp").write_text("editor swap\n")
    (tree / "app.yaml").write_text("kept\n")
    on_open(".app.yaml.swp", (tree / ".app.yaml.swp").unlink)
    source = tree_source(tree)
    with source.snapshot() as captured:
        data = b"".join(captured.chunks)
        fingerprint, warnings = captured.fingerprint, captured.warnings
    swap_file = member_name(str(tree / ".app.yaml.swp"))
    assert warnings == [f"/{swap_file} vanished while being archived"]
    assert fingerprint["vanished"] == [swap_file]
    assert set(fingerprint["files"]) == {member_name(str(tree / "app.yaml"))}
    restore(source, data, tmp_path / "restored")
    assert verify_restore(source, fingerprint["files"], tmp_path / "restored") == []


def test_vanished_files_fail_the_capture_when_the_plan_says_so(
    tmp_path: Path, on_open: Callable[[str, Callable[[], None]], None]
) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "rotated.log").write_text("old log\n")
    on_open("rotated.log", (tree / "rotated.log").unlink)
    with pytest.raises(SourceError, match=r"vanished while being archived: .*rotated\.log"):
        capture(tree_source(tree, vanished_files="fail"))


def test_a_folder_vanishing_mid_backup_is_a_warning(
    tmp_path: Path, on_open: Callable[[str, Callable[[], None]], None]
) -> None:
    tree = tmp_path / "src"
    (tree / "cache").mkdir(parents=True)
    (tree / "cache" / "entry").write_text("x")
    on_open("cache", lambda: shutil.rmtree(tree / "cache"))
    _, hashes, warnings = capture(tree_source(tree))
    assert hashes == {}
    assert warnings == [f"/{member_name(str(tree / 'cache'))} vanished while being archived"]


def test_a_file_swapped_for_a_fifo_mid_backup_is_archived_as_a_fifo_without_blocking(
    tmp_path: Path, on_open: Callable[[str, Callable[[], None]], None]
) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "app.yaml").write_text("mine\n")

    def swap() -> None:
        (tree / "app.yaml").unlink()
        os.mkfifo(tree / "app.yaml")

    on_open("app.yaml", swap)
    data, hashes, _ = capture(tree_source(tree))  # opening the FIFO to read would block
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        [member] = [info for info in tar.getmembers() if info.name.endswith("app.yaml")]
    assert member.isfifo() and hashes == {}


def test_the_archived_roots_of_a_root_symlink_include_what_it_points_to(tmp_path: Path) -> None:
    real = tmp_path / "opt" / "conf"
    real.mkdir(parents=True)
    (real / "app.yaml").write_text("port: 1\n")
    link = tmp_path / "etc-app"
    link.symlink_to(real)
    plain = tmp_path / "plain"
    plain.mkdir()
    source = tree_source(link, plain)
    data, _, _ = capture(source)
    restore(source, data, tmp_path / "restored")
    roots = archived_roots(str(tmp_path / "restored"), source.roots)
    assert roots == [member_name(str(link)), member_name(str(real)), member_name(str(plain))]
