"""Restores that cannot destroy, for SQLite files and config trees through the command line:
`--force` swaps the verified copy in and keeps the replaced file or folder (printing the
command that removes it), `--drop-previous` removes it, a restore that cannot fit its staging
copy changes nothing."""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from drkit.actions.restore_swap import check_staging_space
from drkit.cli import main
from drkit.errors import RefusedError

from .conftest import two_store_setup


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    setup = two_store_setup(tmp_path)
    assert main(["--catalog", setup["url"], "backup", setup["plan"]]) == 0
    connection = sqlite3.connect(setup["database"])
    connection.execute("INSERT INTO orders (note, total) VALUES ('after the backup', 1)")
    connection.commit()
    connection.close()
    (setup["config"] / "app.yaml").write_text("changed after the backup\n")
    return setup


def _restore(setup: dict[str, Any], *args: str) -> int:
    return main(["--catalog", setup["url"], "restore", "--yes", "--force", *args, setup["plan"]])


def _orders(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM orders").fetchone()[0])
    finally:
        connection.close()


def test_force_keeps_the_replaced_file_and_folder_and_says_how_to_remove_them(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert _restore(setup) == 0
    out = capsys.readouterr().out
    assert _orders(setup["database"]) == 300
    assert "secret_marker" in (setup["config"] / "app.yaml").read_text()
    [kept_file] = setup["database"].parent.glob("app.db_drkit_previous_*")
    assert _orders(kept_file) == 301
    [kept_tree] = setup["config"].parent.glob("_drkit_previous_*")
    kept_config = kept_tree / setup["config"].relative_to("/")
    assert (kept_config / "app.yaml").read_text() == "changed after the backup\n"
    commands = [line.strip() for line in out.splitlines() if line.strip().startswith("rm ")]
    assert len(commands) == 2
    for command in commands:
        subprocess.run(shlex.split(command), check=True)
    assert not kept_file.exists() and not kept_tree.exists()
    assert not list(setup["tmp"].rglob("*_drkit_restoring_*"))


def test_drop_previous_keeps_nothing_beside_the_targets(setup: dict[str, Any]) -> None:
    assert _restore(setup, "--drop-previous") == 0
    assert _orders(setup["database"]) == 300
    assert not list(setup["tmp"].rglob("*_drkit_*"))


def test_a_staging_folder_without_room_refuses_before_anything_is_fetched(
    tmp_path: Path,
) -> None:
    with pytest.raises(RefusedError, match="free"):
        check_staging_space(tmp_path, [1 << 60])
    check_staging_space(tmp_path, [1 << 10])


def test_a_root_that_is_a_symlink_comes_back_with_its_folder_and_nothing_stays_staged(
    tmp_path: Path,
) -> None:
    # /etc/app -> /opt/app/conf: the link and the folder it points to are both captured
    folder = tmp_path / "opt" / "app" / "conf"
    folder.mkdir(parents=True)
    (folder / "app.yaml").write_text("as backed up\n")
    link = tmp_path / "etc" / "app"
    link.parent.mkdir()
    link.symlink_to(folder)
    sources = [{"name": "app-config", "type": "files", "paths": [str(link)]}]
    setup = two_store_setup(tmp_path, sources=sources)
    assert main(["--catalog", setup["url"], "backup", setup["plan"]]) == 0
    (folder / "app.yaml").write_text("changed after the backup\n")
    assert _restore(setup, "--drop-previous") == 0
    assert link.is_symlink() and os.readlink(link) == str(folder)
    assert (link / "app.yaml").read_text() == "as backed up\n"
    assert not list(tmp_path.rglob("*_drkit_*"))
