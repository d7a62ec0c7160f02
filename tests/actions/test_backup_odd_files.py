"""Backups of file trees with odd entries, end to end through the repository: a name that is
not UTF-8 is stored and restored, a file vanishing mid-backup is a warning in the result, and
a backup that fails on one leaves nothing in the stores."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drkit.actions.backup import backup
from drkit.actions.drill import drill
from drkit.actions.resources import Resources
from drkit.actions.restore import RestoreRequest, execute_restore, prepare_restore
from drkit.outcome import Outcome
from drkit.sources.files import FileTree

BAD_NAME = b"caf\xe9-latin1.yaml"


def config_source(backend: dict[str, Path], **options: Any) -> list[dict[str, Any]]:
    return [{"name": "app-config", "type": "files", "paths": [str(backend["config"])], **options}]


def vanish_on_open(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Remove ``path`` right before drkit opens it, as a log rotation would."""
    real_open = os.open

    def racing_open(name: object, flags: int, *args: object, **kwargs: object) -> int:
        if name == path.name and kwargs.get("dir_fd") is not None and path.exists():
            path.unlink()
        return real_open(name, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", racing_open)


def test_a_name_that_is_not_utf8_is_backed_up_and_restored(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
) -> None:
    with open(os.path.join(os.fsencode(backend["config"]), BAD_NAME), "wb") as file:
        file.write(b"charset: latin1\n")
    resources = make_resources(two_regions, sources=config_source(backend))
    result = backup(resources)
    assert result.outcome is Outcome.OK, result.error
    target = tmp_path / "restored"
    request = RestoreRequest(targets={"app-config": str(target)})
    prepared = execute_restore(resources, prepare_restore(resources, request), force=False)
    assert all(not item.differences for item in prepared.items)
    restored = os.path.join(os.fsencode(target), os.fsencode(backend["config"]).lstrip(b"/"))
    with open(os.path.join(restored, BAD_NAME), "rb") as file:
        assert file.read() == b"charset: latin1\n"


def test_a_file_vanishing_mid_backup_is_a_warning_of_a_good_backup(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rotated = backend["config"] / "app.log.1"
    rotated.write_text("old log\n")
    vanish_on_open(monkeypatch, rotated)
    result = backup(make_resources(two_regions, sources=config_source(backend)))
    assert result.outcome is Outcome.OK, result.error
    assert result.warnings == [f"app-config: {rotated} vanished while being archived"]
    assert result.to_json()["warnings"] == result.warnings


def test_a_backup_failing_on_a_vanished_file_leaves_nothing_in_the_stores(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    rotated = backend["config"] / "app.log.1"
    rotated.write_text("old log\n")
    vanish_on_open(monkeypatch, rotated)
    sources = config_source(backend, vanished_files="fail")
    result = backup(make_resources(two_regions, sources=sources))
    assert result.outcome is Outcome.FAILED
    assert "app.log.1" in (result.error or "")
    assert [p for p in (tmp_path / "stores").rglob("*") if p.is_file()] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another owner")
def test_sqlite_restored_in_place_gets_back_its_mode_and_owner(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
) -> None:
    database = backend["database"]
    database.chmod(0o640)
    os.chown(database, 65534, 65534)
    sources = [{"name": "app-db", "type": "sqlite", "path": str(database)}]
    resources = make_resources(two_regions, sources=sources)
    assert backup(resources).outcome is Outcome.OK
    os.chown(database, 0, 0)
    database.chmod(0o600)
    request = RestoreRequest(sources=["app-db"], force=True)
    prepared = execute_restore(resources, prepare_restore(resources, request), force=True)
    assert [item.differences for item in prepared.items] == [[]]
    status = database.stat()
    assert (status.st_uid, status.st_gid, status.st_mode & 0o7777) == (65534, 65534, 0o640)


def test_a_manifest_that_cannot_be_sealed_leaves_no_orphan_artifacts(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from drkit.repository import writer

    def unsealable(*args: object, **kwargs: object) -> bytes:
        raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(writer, "seal_manifest", unsealable)
    with pytest.raises(UnicodeEncodeError):
        backup(make_resources(two_regions, sources=config_source(backend)))
    assert [p for p in (tmp_path / "stores").rglob("*") if p.is_file()] == []


def test_a_drill_restores_a_tree_of_odd_entries_and_checks_every_file(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = tmp_path / "opt" / "conf"
    real.mkdir(parents=True)
    (real / "app.yaml").write_text("port: 1\n")
    with open(os.path.join(os.fsencode(real), BAD_NAME), "wb") as file:
        file.write(b"charset: latin1\n")
    with open(real / "disk.img", "wb") as file:
        file.truncate(8 << 20)
        file.write(b"head")
    os.mkfifo(real / "pipe")
    link = tmp_path / "etc-app"
    link.symlink_to(real)  # the configured path is a symlink to the real folder
    sources = [{"name": "app-config", "type": "files", "paths": [str(link)]}]
    checks = {"checks": [{"type": "fingerprint"}]}
    resources = make_resources(two_regions, sources=sources, drill=checks)
    backed_up = backup(resources)
    assert backed_up.committed is not None
    [artifact] = backed_up.committed.manifest.artifacts
    prefix = str(real).lstrip("/")
    assert {f"{prefix}/app.yaml", f"{prefix}/disk.img", f"{prefix}/caf\\xe9-latin1.yaml"} <= set(
        artifact.fingerprint["files"]
    )
    [result] = drill(resources)
    assert result.outcome is Outcome.OK, result.to_json()

    original = FileTree.restore

    def restore_without_the_real_folder(
        self: FileTree, stream: Any, target: Any, **kw: Any
    ) -> None:
        original(self, stream, target, **kw)
        (Path(target.location) / prefix / "app.yaml").unlink()

    monkeypatch.setattr(FileTree, "restore", restore_without_the_real_folder)
    [failed] = drill(resources)
    assert failed.outcome is not Outcome.OK
    [check] = failed.checks
    assert not check.passed and f"{prefix}/app.yaml is missing" in check.detail


@pytest.mark.mysql
def test_a_drill_of_a_latin1_database_with_definers_and_grants_passes_in_a_scratch_database(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    mysql_server: str,
) -> None:
    import pymysql

    suffix = secrets.token_hex(4)
    database, definer = f"drkit_latin1_{suffix}", f"drkit_definer_{suffix}"
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    statements = [
        f"CREATE DATABASE `{database}` CHARACTER SET latin1",
        f"CREATE USER `{definer}`@'%'",
        f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY, name VARCHAR(20))",
        f"INSERT INTO `{database}`.t VALUES (1, 'Müller')",
        f"CREATE DEFINER=`{definer}`@'%' SQL SECURITY DEFINER VIEW `{database}`.v AS"
        f" SELECT name FROM `{database}`.t",
        f"GRANT SELECT ON `{database}`.* TO `{definer}`@'%'",
    ]
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        sources = [{"name": "ledger", "type": "mysql", "url": f"{mysql_server}/{database}"}]
        drill_settings = {
            "sandbox": {"mysql": f"{mysql_server}/"},
            "checks": [
                {"type": "fingerprint"},
                {
                    "type": "sql",
                    "source": "ledger",
                    "query": "SELECT COUNT(*) FROM v",
                    "expect": "= 1",
                },
            ],
        }
        resources = make_resources(two_regions, sources=sources, drill=drill_settings)
        assert backup(resources).outcome is Outcome.OK
        [result] = drill(resources)
        assert result.outcome is Outcome.OK, result.to_json()
        with connection.cursor() as cursor:  # the scratch copy's grants went with it
            cursor.execute(f"SHOW GRANTS FOR `{definer}`@'%'")
            lines = [str(row[0]) for row in cursor.fetchall()]
        assert [line for line in lines if " ON *.* " not in line] == [
            f"GRANT SELECT ON `{database}`.* TO `{definer}`@`%`"
        ]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cursor.execute(f"DROP USER IF EXISTS `{definer}`@'%'")
        connection.close()
