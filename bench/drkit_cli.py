"""The real drkit command line, run as a subprocess and measured: backup, restore, drill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import Sample, run_timed
from bench.plans import SOURCE_NAME
from bench.workspace import Workspace

REPOSITORY = Path(__file__).resolve().parent.parent
#: what ``drkit backup`` of a PostgreSQL source imports, in three steps (each adds to the last)
BACKUP_IMPORTS = {
    "command": "drkit.cli.backup",
    "catalog": "drkit.cli.backup, drkit.catalog",
    "source": "drkit.cli.backup, drkit.catalog, drkit.sources.postgresql",
}


def drkit_command() -> list[str]:
    """The drkit command line of this checkout: ``python -m drkit`` with the repository first
    on PYTHONPATH (see ``DrkitCli``), whatever ``drkit`` another editable install points at."""
    if not (REPOSITORY / "drkit" / "__main__.py").exists():
        raise SystemExit(f"no drkit package in {REPOSITORY}")
    return [sys.executable, "-m", "drkit"]


def compile_checkout() -> None:
    """Write the checkout's bytecode (``__pycache__``), as installing a package does, so no
    measured command compiles drkit from source: with PYTHONDONTWRITEBYTECODE set (as on the
    bench's machine) every command would, about 0.1 s of CPU each."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    command = [sys.executable, "-m", "compileall", "-q", str(REPOSITORY / "drkit")]
    subprocess.run(command, env=environment, check=True, capture_output=True)


@dataclass(frozen=True)
class Outcome:
    """A measured drkit command and its --json document."""

    sample: Sample
    document: Any

    @property
    def phases(self) -> dict[str, float]:
        document = self.document[0] if isinstance(self.document, list) else self.document
        return {name: float(value) for name, value in document.get("phases", {}).items()}


class DrkitCli:
    """``drkit --catalog sqlite:///... COMMAND PLAN --json``, measured. The repository goes
    first on PYTHONPATH, so the drkit measured is this checkout's even where the installed
    ``drkit`` script is an editable install of another one."""

    def __init__(self, workspace: Workspace, environment: Mapping[str, str]):
        self.workspace = workspace
        self.program = drkit_command()
        self.catalog = f"sqlite:///{workspace.path('catalog.db')}"
        path = [str(REPOSITORY), *filter(None, [environment.get("PYTHONPATH")])]
        self.environment = {**environment, "PYTHONPATH": os.pathsep.join(path)}
        compile_checkout()

    def _run(self, *arguments: str) -> Outcome:
        argv = [*self.program, "--quiet", "--catalog", self.catalog, *arguments, "--json"]
        sample = run_timed(self.workspace, argv, env=self.environment, capture=True)
        return Outcome(sample, json.loads(sample.stdout))

    def backup(self, plan: Path) -> Outcome:
        outcome = self._run("backup", str(plan))
        if outcome.document["outcome"] != "ok":
            raise RuntimeError(f"drkit backup {plan.name}: {outcome.document['error']}")
        return outcome

    def restore(self, plan: Path, snapshot_id: str, database: str) -> Outcome:
        outcome = self._run(
            "restore",
            str(plan),
            "--snapshot",
            snapshot_id,
            "--to",
            f"{SOURCE_NAME}={database}",
            "--yes",
        )
        if outcome.document["outcome"] != "ok":
            raise RuntimeError(f"drkit restore {plan.name}: {outcome.document}")
        return outcome

    def drill(self, plan: Path, snapshot_id: str) -> Outcome:
        outcome = self._run("drill", str(plan), "--snapshot", snapshot_id)
        result = outcome.document[0]
        if result["outcome"] not in ("ok", "passed"):
            raise RuntimeError(f"drkit drill {plan.name}: {result['outcome']} {result['error']}")
        return outcome

    def create_catalog(self) -> Sample:
        """``drkit catalog upgrade`` on the new catalog: the first command against a catalog
        creates its tables (with alembic, which later commands do not import)."""
        argv = [*self.program, "--quiet", "--catalog", self.catalog, "catalog", "upgrade"]
        return run_timed(self.workspace, argv, env=self.environment)

    def imports(self, modules: str) -> Sample:
        """Importing ``modules`` (comma-separated) in a fresh interpreter, nothing else."""
        argv = [sys.executable, "-c", f"import {modules}"]
        return run_timed(self.workspace, argv, env=self.environment)

    def help(self) -> Sample:
        """``drkit --help``: the command line listing every command."""
        return run_timed(self.workspace, [*self.program, "--help"], env=self.environment)

    def idle(self) -> Sample:
        """``drkit --version``: Python and the command line, doing nothing."""
        return run_timed(self.workspace, [*self.program, "--version"], env=self.environment)
