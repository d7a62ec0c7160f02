"""Twenty `drkit run --due` at once over the same twenty plans, on one catalog (SQLite and
PostgreSQL): every due job runs exactly once, every run is recorded and closed, and no runner
fails on a lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from drkit.catalog import Catalog
from tests.faults.helpers import child_environment

from .conftest import make_backend, plan_document

RUNNERS = 20
PLANS = 20


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.mark.slow
def test_twenty_runners_run_each_due_job_once_and_record_every_run(
    tmp_path: Path, shared_catalog: str
) -> None:
    make_backend(tmp_path / "backend", orders=10)
    folder = tmp_path / "plans"
    folder.mkdir()
    for number in range(PLANS):
        stores: list[dict[str, Any]] = [
            {
                "name": name,
                "type": "filesystem",
                "path": str(tmp_path / "stores" / f"{number}-{name}"),
                "region": name,
            }
            for name in ("east", "west")
        ]
        document = plan_document(
            tmp_path, stores, schedule={"backup": "0 * * * *", "verify": "0 4 * * *"}
        )
        document["name"] = f"api-{number:02d}"
        (folder / f"api-{number:02d}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    Catalog.open(shared_catalog).close()  # migrated once, so every runner starts alike
    argv = [sys.executable, "-m", "drkit", "--catalog", shared_catalog, "run", "--due", str(folder)]
    runners = [
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_environment({"DRKIT_HOME": str(tmp_path / "home")}),
        )
        for _ in range(RUNNERS)
    ]
    results = [(runner.wait(timeout=900), *runner.communicate()) for runner in runners]

    assert [code for code, _, _ in results] == [0] * RUNNERS, results
    assert not [err for _, _, err in results if "database is locked" in err or "deadlock" in err]
    with Catalog.open(shared_catalog) as catalog:
        runs = catalog.list_runs()
    assert not [run for run in runs if run.outcome == "running"]
    for number in range(PLANS):
        plan = f"api-{number:02d}"
        done = sorted(run.kind for run in runs if run.plan == plan)
        assert done == ["backup", "prune", "verify"], (plan, done)
        assert {run.outcome for run in runs if run.plan == plan} == {"ok"}
