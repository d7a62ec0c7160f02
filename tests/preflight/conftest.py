"""Helpers for preflight tests: folders no one may write to (root included), and a pg_dump
that reports an old version."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require

# restic repositories that open quickly, shared with the store tests
from tests.stores.conftest import (
    local_restic_repository,
    restic_environment,
    restic_template,
)

__all__ = ["local_restic_repository", "restic_environment", "restic_template"]


@pytest.fixture
def unwritable_folder(tmp_path: Path) -> Iterator[Path]:
    """An existing folder that nobody can create files in: mode 0555, and for root (whom
    modes do not stop) the immutable attribute."""
    folder = tmp_path / "read-only-store"
    folder.mkdir()
    is_root = os.geteuid() == 0
    if is_root:
        chattr = shutil.which("chattr")
        require(chattr is not None, "chattr is needed to make a folder unwritable for root")
        subprocess.run([chattr or "chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            require(False, f"{folder} stays writable here (chattr +i not honoured)")
        yield folder
    finally:
        if is_root:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        folder.chmod(0o755)


@pytest.fixture
def old_pg_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pg_dump first on PATH that says it is version 13.4, and no per-major client folder
    (as in an image that carries one older client): what a backup would run."""
    folder = tmp_path / "old-client"
    folder.mkdir()
    program = folder / "pg_dump"
    program.write_text('#!/bin/sh\necho "pg_dump (PostgreSQL) 13.4 (wrapper)"\n')
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr("drkit.execute.POSTGRESQL_LIB", tmp_path / "no-postgresql-lib")
    return program
