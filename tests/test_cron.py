"""croniter through drkit.cron starts no program: a bare `import croniter` runs `file` with the
importing process's whole environment (the plan's secrets, in drkit), drkit.cron does not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def programs_run_by(statement: str, tmp_path: Path) -> list[str]:
    """The environments a stand-in `file` on PATH saw while ``statement`` ran."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    seen = tmp_path / "seen"
    stand_in = folder / "file"
    stand_in.write_text(f'#!/bin/sh\nenv >> "{seen}"\necho ELF\n')
    stand_in.chmod(0o755)
    environment = dict(os.environ, PATH=f"{folder}:{os.environ['PATH']}", DRKIT_CRON_SECRET="s3")
    subprocess.run([sys.executable, "-c", statement], env=environment, check=True)
    return seen.read_text().split("\n\n") if seen.exists() else []


def test_drkit_cron_imports_croniter_without_running_a_program(tmp_path: Path) -> None:
    assert programs_run_by("from drkit.cron import croniter; croniter('* * * * *')", tmp_path) == []


def test_a_bare_croniter_import_would_hand_the_environment_to_file(tmp_path: Path) -> None:
    """The reason for drkit.cron: if croniter ever stops doing this, drkit.cron can go."""
    [seen] = programs_run_by("import croniter", tmp_path)
    assert "DRKIT_CRON_SECRET=s3" in seen
