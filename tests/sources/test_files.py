"""The files source: a streamed PAX tar that restores modes, owners, mtimes, symlinks and
folders anywhere, honours include/exclude, and refuses archives that escape the target."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from drkit.errors import RefusedError, SourceError
from drkit.plan.schema import FilesSource
from drkit.sources import make_source, tree_archive
from drkit.sources.base import Target, compare_fingerprints
from drkit.sources.files import CHUNK_SIZE, FileTree, member_name

IS_ROOT = os.geteuid() == 0
UNICODE_NAME = "café-ünïcode ✓.yaml"
MTIME = 1_600_000_000.25


def tree_source(
    *paths: Path, include: list[str] | None = None, exclude: list[str] | None = None
) -> FileTree:
    spec = FilesSource(
        name="config",
        type="files",
        paths=[str(p) for p in paths],
        include=include or [],
        exclude=exclude or [],
    )
    return FileTree(spec)


def capture(source: FileTree) -> tuple[bytes, dict[str, str]]:
    with source.snapshot() as captured:
        data = b"".join(captured.chunks)
        return data, captured.fingerprint["files"]


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {info.name: info for info in tar.getmembers()}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small config tree with the shapes a real /etc/<app> has."""
    root = tmp_path / "src"
    (root / "conf.d").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "app.yaml").write_text("port: 8080\n")
    (root / "run.sh").write_text("#!/bin/sh\nexit 0\n")
    (root / "conf.d" / "db.yaml").write_text("host: db\n")
    (root / UNICODE_NAME).write_text("ok: true\n")
    (root / "app.yaml.swp").write_text("editor junk")
    (root / "current").symlink_to("conf.d/db.yaml")
    (root / "certs").symlink_to("/nonexistent/certs")  # absolute, dangling: kept as is
    os.link(root / "app.yaml", root / "app-hardlink.yaml")
    (root / "app.yaml").chmod(0o640)
    (root / "run.sh").chmod(0o755)
    (root / "conf.d" / "db.yaml").chmod(0o664)
    (root / "conf.d").chmod(0o2775)
    (root / "empty").chmod(0o700)
    if IS_ROOT:
        os.chown(root / "app.yaml", 1234, 2345)
        os.lchown(root / "current", 1234, 2345)
    for path in (root / "app.yaml", root / "conf.d" / "db.yaml", root / "conf.d", root / "empty"):
        os.utime(path, (MTIME, MTIME))
    root.chmod(0o750)
    return root


def restored_path(target: Path, original: Path) -> Path:
    return target / member_name(str(original))


def test_make_source_builds_a_file_tree_for_a_files_spec(tree: Path) -> None:
    spec = FilesSource(name="config", type="files", paths=[str(tree)])
    assert isinstance(make_source(spec), FileTree)


def test_members_are_named_relative_to_the_filesystem_root_in_pax_format(tree: Path) -> None:
    data, _ = capture(tree_source(tree))
    names = members(data)
    prefix = str(tree).lstrip("/")
    assert prefix in names and names[prefix].isdir()
    assert f"{prefix}/app.yaml" in names
    assert all(name == prefix or name.startswith(prefix + "/") for name in names)
    unicode_member = names[f"{prefix}/{UNICODE_NAME}"]
    assert unicode_member.pax_headers.get("path") == f"{prefix}/{UNICODE_NAME}"
    assert names[f"{prefix}/current"].issym()
    # sorted walk: app-hardlink.yaml comes first and holds the data, app.yaml links to it
    assert names[f"{prefix}/app.yaml"].islnk()
    assert names[f"{prefix}/app.yaml"].linkname == f"{prefix}/app-hardlink.yaml"


def test_fingerprint_hashes_files_and_records_symlink_targets(tree: Path) -> None:
    _, hashes = capture(tree_source(tree))
    prefix = str(tree).lstrip("/")
    assert hashes[f"{prefix}/app.yaml"] == hashlib.sha256(b"port: 8080\n").hexdigest()
    assert hashes[f"{prefix}/app-hardlink.yaml"] == hashes[f"{prefix}/app.yaml"]
    assert hashes[f"{prefix}/current"] == "symlink:conf.d/db.yaml"
    assert hashes[f"{prefix}/certs"] == "symlink:/nonexistent/certs"
    assert f"{prefix}/conf.d" not in hashes  # folders carry no content to compare


def test_round_trip_keeps_content_modes_mtimes_symlinks_and_folders(
    tree: Path, tmp_path: Path
) -> None:
    source = tree_source(tree)
    data, hashes = capture(source)
    target = tmp_path / "restored"
    source.restore(io.BytesIO(data), Target(str(target)))

    copy = restored_path(target, tree)
    assert (copy / "app.yaml").read_text() == "port: 8080\n"
    assert (copy / UNICODE_NAME).read_text() == "ok: true\n"
    for relative, mode in [
        ("app.yaml", 0o640),
        ("run.sh", 0o755),
        ("conf.d/db.yaml", 0o664),
        ("conf.d", 0o2775),
        ("empty", 0o700),
        (".", 0o750),
    ]:
        assert (copy / relative).stat().st_mode & 0o7777 == mode, relative
    for relative in ("app.yaml", "conf.d/db.yaml", "conf.d", "empty"):
        assert (copy / relative).stat().st_mtime == pytest.approx(MTIME, abs=1e-6), relative
    assert os.readlink(copy / "current") == "conf.d/db.yaml"
    assert os.readlink(copy / "certs") == "/nonexistent/certs"
    assert (copy / "empty").is_dir() and not any((copy / "empty").iterdir())
    restored = source.fingerprint_target(Target(str(target)), {"files": hashes})
    assert compare_fingerprints({"files": hashes}, restored) == []


@pytest.mark.skipif(not IS_ROOT, reason="only root can give files to other owners")
def test_round_trip_as_root_keeps_owners(tree: Path, tmp_path: Path) -> None:
    source = tree_source(tree)
    data, _ = capture(source)
    target = tmp_path / "restored"
    source.restore(io.BytesIO(data), Target(str(target)))
    copy = restored_path(target, tree)
    assert ((copy / "app.yaml").stat().st_uid, (copy / "app.yaml").stat().st_gid) == (1234, 2345)
    assert os.lstat(copy / "current").st_uid == 1234


def test_fingerprint_of_a_changed_restore_names_the_file(tree: Path, tmp_path: Path) -> None:
    source = tree_source(tree)
    data, hashes = capture(source)
    target = tmp_path / "restored"
    source.restore(io.BytesIO(data), Target(str(target)))
    (restored_path(target, tree) / "run.sh").write_text("tampered")
    problems = compare_fingerprints(
        {"files": hashes}, source.fingerprint_target(Target(str(target)), {})
    )
    assert len(problems) == 1 and "run.sh" in problems[0]


def test_include_and_exclude_match_relative_paths_and_basenames(tree: Path) -> None:
    data, hashes = capture(tree_source(tree, include=["*.yaml"], exclude=["db.*", "*hardlink*"]))
    prefix = str(tree).lstrip("/")
    assert set(hashes) == {f"{prefix}/app.yaml", f"{prefix}/{UNICODE_NAME}"}
    # folders without anything selected are left out; the root folder holds selected files
    assert set(members(data)) == {prefix, *hashes}


def test_excluding_a_folder_leaves_out_everything_below_it(tree: Path) -> None:
    _, hashes = capture(tree_source(tree, exclude=["conf.d", "*.swp"]))
    prefix = str(tree).lstrip("/")
    assert not any(name.startswith(f"{prefix}/conf.d") for name in hashes)
    assert f"{prefix}/app.yaml.swp" not in hashes and f"{prefix}/run.sh" in hashes


def test_including_a_folder_selects_everything_below_it(tree: Path) -> None:
    _, hashes = capture(tree_source(tree, include=["conf.d"]))
    assert set(hashes) == {f"{str(tree).lstrip('/')}/conf.d/db.yaml"}


def test_a_single_file_path_is_captured_with_its_own_name(tree: Path) -> None:
    _, hashes = capture(tree_source(tree / "run.sh"))
    assert list(hashes) == [member_name(str(tree / "run.sh"))]


def test_missing_path_fails_before_streaming(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        tree_source(tmp_path / "nope").snapshot().__enter__()


def test_file_shrinking_while_read_fails_naming_the_file(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = tree_archive.header_for

    def stat_says_bigger(
        member: str, status: os.stat_result, linkname: str = ""
    ) -> tarfile.TarInfo | None:
        info = original(member, status, linkname)
        if info is not None and info.name.endswith("run.sh"):
            info.size += 4096  # as if the file lost 4 KiB between stat and read
        return info

    monkeypatch.setattr(tree_archive, "header_for", stat_says_bigger)
    with pytest.raises(SourceError, match=r"run\.sh shrank"):
        capture(tree_source(tree))


def test_large_file_streams_in_bounded_chunks(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    content = os.urandom(3 * CHUNK_SIZE + 123)
    (folder / "blob.bin").write_bytes(content)
    with tree_source(folder).snapshot() as captured:
        sizes = [len(chunk) for chunk in captured.chunks]
        hashes = captured.fingerprint["files"]
    assert len(sizes) >= 4 and max(sizes) <= CHUNK_SIZE
    assert hashes[member_name(str(folder / "blob.bin"))] == hashlib.sha256(content).hexdigest()


def test_abandoning_the_stream_stops_the_writer_thread(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    for index in range(8):
        (folder / f"blob{index}.bin").write_bytes(os.urandom(CHUNK_SIZE))
    with tree_source(folder).snapshot() as captured:
        next(captured.chunks)
        assert any(t.name.startswith("drkit-tar-") for t in threading.enumerate())
    assert not any(t.name.startswith("drkit-tar-") for t in threading.enumerate())


def test_restore_refuses_a_non_empty_folder_without_replace(tree: Path, tmp_path: Path) -> None:
    source = tree_source(tree)
    data, _ = capture(source)
    target = tmp_path / "restored"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert not source.is_target_empty(Target(str(target)))
    with pytest.raises(RefusedError):
        source.restore(io.BytesIO(data), Target(str(target)))
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_restore_with_replace_never_writes_through_an_existing_symlink(
    tree: Path, tmp_path: Path
) -> None:
    source = tree_source(tree)
    data, _ = capture(source)
    target = tmp_path / "restored"
    copy = restored_path(target, tree)
    copy.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (copy / "app.yaml").symlink_to(victim)
    source.restore(io.BytesIO(data), Target(str(target)), replace=True)
    assert victim.read_text() == "untouched"
    assert not (copy / "app.yaml").is_symlink()
    assert (copy / "app.yaml").read_text() == "port: 8080\n"


def test_empty_or_missing_folder_is_an_empty_target(tmp_path: Path) -> None:
    source = tree_source(tmp_path)
    assert source.is_target_empty(Target(str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    assert source.is_target_empty(Target(str(tmp_path / "empty")))
    assert "does not exist" in source.describe_target(Target(str(tmp_path / "missing")))


def hostile_archive(*entries: tuple[str, str, str]) -> bytes:
    """A tar of (kind, name, link-or-content) entries, as an attacker would write it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value.encode()))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = value
                tar.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "entries",
    [
        [("file", "../escaped.txt", "evil")],
        [("file", "a/../../escaped.txt", "evil")],
        [("symlink", "link", "{outside}"), ("file", "link/escaped.txt", "evil")],
        [("hardlink", "hard", "../outside/secret.txt"), ("file", "hard", "evil")],
    ],
    ids=["dot-dot", "nested-dot-dot", "through-symlink", "hard-link-outside"],
)
def test_restore_refuses_members_escaping_the_target(
    entries: list[tuple[str, str, str]], tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    target = tmp_path / "target"
    resolved = [(kind, name, value.format(outside=outside)) for kind, name, value in entries]
    with pytest.raises(SourceError, match="unsafe"):
        tree_source(tmp_path).restore(io.BytesIO(hostile_archive(*resolved)), Target(str(target)))
    assert not (tmp_path / "escaped.txt").exists()
    assert not (outside / "escaped.txt").exists()
    assert (outside / "secret.txt").read_text() == "secret"


def test_restore_of_a_truncated_archive_fails(tree: Path, tmp_path: Path) -> None:
    source = tree_source(tree)
    data, _ = capture(source)
    with pytest.raises(SourceError):
        source.restore(io.BytesIO(data[:700]), Target(str(tmp_path / "restored")))


def test_restore_reads_the_stream_to_its_end(tree: Path, tmp_path: Path) -> None:
    """Decrypting streams check authenticity at their end: the restore must get there."""
    source = tree_source(tree)
    data, _ = capture(source)
    stream = io.BytesIO(data + bytes(200_000))
    source.restore(stream, Target(str(tmp_path / "restored")))
    assert stream.tell() == len(data) + 200_000
