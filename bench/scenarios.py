"""The measurements. ``Bench`` holds what they share (workspace, server, drkit, plans) and
collects every run into named ``Series``; each ``measure_*`` function runs one variant once,
so rounds can interleave them."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import dataset as data
from bench.dataset import Dataset
from bench.drkit_cli import DrkitCli
from bench.measure import Sample, Series, run_timed
from bench.moto import CREDENTIALS, create_bucket, start_moto
from bench.plans import (
    RESTIC_PASSWORD_VARIABLE,
    filesystem_store,
    restic_store,
    s3_store,
    write_plan,
)
from bench.server import PostgresServer
from bench.workspace import Workspace
from drkit.sources.pgarchive import add_offsets

RESTIC_PASSWORD = "drkit-bench-not-a-secret"


@dataclass
class Plans:
    """The plan files of one dataset."""

    one_store: Path
    three_stores: Path
    level_one: Path  # 1 store, zstd level 1
    with_s3: Path | None = None


@dataclass
class TinyPlans:
    """A tiny API backend (a SQLite database and a config folder) backed up to 2 filesystem
    stores, and to the same 2 plus a restic repository: what a command costs before data."""

    two_stores: Path
    with_restic: Path


@dataclass
class ResticFigures:
    """The restic case: a full backup, the 1% change, and the second backup."""

    rows_changed: int = 0
    backups: list[dict[str, Any]] = field(default_factory=list)


class Bench:
    """Shared state of one benchmark run and the series it collects."""

    def __init__(self, workspace: Workspace, server: PostgresServer):
        self.workspace = workspace
        self.server = server
        tmp = workspace.folder("tmp")
        workspace.root.chmod(0o711)  # drill clusters run as postgres and live under tmp/
        tmp.chmod(0o711)
        self.environment = {
            **server.environment(),
            **CREDENTIALS,
            "TMPDIR": str(tmp),
            RESTIC_PASSWORD_VARIABLE: RESTIC_PASSWORD,
            "RESTIC_CACHE_DIR": str(workspace.folder("restic-cache")),
        }
        self.cli = DrkitCli(workspace, self.environment)
        self.key = workspace.path("bench.key")
        subprocess.run(
            [*self.cli.program, "keys", "generate", str(self.key)],
            env=self.cli.environment,
            check=True,
            capture_output=True,
        )
        self.series: dict[str, Series] = defaultdict(Series)
        self.sizes: dict[str, int] = {}
        self.s3_endpoint: str | None = None

    def plans_for(self, dataset: Dataset, label: str, *, with_s3: bool = False) -> Plans:
        """Plans backing ``dataset`` up to 1 and to 3 filesystem stores (and 2 + S3)."""
        plans = Plans(
            self._plan(dataset, f"{label}-1", self._folders(f"{label}-1", 1)),
            self._plan(dataset, f"{label}-3", self._folders(f"{label}-3", 3)),
            self._plan(dataset, f"{label}-z1", self._folders(f"{label}-z1", 1), level=1),
        )
        if with_s3:
            self.s3_endpoint = self.s3_endpoint or start_moto(self.workspace)
            bucket = f"drkit-bench-{label}"
            create_bucket(self.s3_endpoint, bucket)
            stores = [*self._folders(f"{label}-s3", 2), s3_store("s3", bucket, self.s3_endpoint)]
            plans.with_s3 = self._plan(dataset, f"{label}-s3", stores)
        return plans

    def _folders(self, plan_name: str, count: int) -> list[dict[str, Any]]:
        """Filesystem stores of one plan, each in its own region, under stores/PLAN/."""
        return [
            filesystem_store(
                f"fs-{n}", self.workspace.path("stores", plan_name, f"fs-{n}"), f"r{n}"
            )
            for n in range(1, count + 1)
        ]

    def _plan(
        self, dataset: Dataset, name: str, stores: list[dict[str, Any]], level: int = 3
    ) -> Path:
        return write_plan(
            self.workspace.folder("plans") / f"{name}.yaml",
            name=name,
            database_url=self.server.url(dataset.name),
            key_path=self.key,
            stores=stores,
            level=level,
        )

    def tiny_plans(self) -> TinyPlans:
        """The tiny backend's files and plans; the restic repository is created here, so
        the timed backups find it (as every backup but the first does)."""
        folder = self.workspace.folder("tiny")
        (folder / "config").mkdir(exist_ok=True)
        (folder / "config" / "app.yaml").write_text("listen: 8080\nworkers: 4\n")
        with sqlite3.connect(folder / "app.db") as connection:
            connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
            rows = [(f"order {number}",) for number in range(500)]
            connection.executemany("INSERT INTO orders (note) VALUES (?)", rows)
        connection.close()
        sources: list[dict[str, Any]] = [
            {"name": "app-db", "type": "sqlite", "path": str(folder / "app.db")},
            {"name": "app-config", "type": "files", "paths": [str(folder / "config")]},
        ]
        plans = TinyPlans(
            write_plan(
                self.workspace.folder("plans") / "tiny-2.yaml",
                name="tiny-2",
                database_url="",
                key_path=self.key,
                stores=self._folders("tiny-2", 2),
                sources=sources,
            ),
            write_plan(
                self.workspace.folder("plans") / "tiny-restic.yaml",
                name="tiny-restic",
                database_url="",
                key_path=self.key,
                stores=[
                    *self._folders("tiny-restic", 2),
                    restic_store("restic", self.workspace.path("tiny-restic-repo")),
                ],
                sources=sources,
            ),
        )
        self.cli.backup(plans.with_restic)  # creates the restic repository (init: true)
        return plans

    def checkpoint(self) -> None:
        """Flush the server's dirty pages, and the kernel's, before a timed step, so one
        step's writes (a restored database, a 1 GB archive copy) are not paid for by the
        next."""
        self.server.execute("postgres", "CHECKPOINT")
        os.sync()

    def run(self, argv: list[str], *, stdout: Path | None = None) -> Sample:
        return run_timed(self.workspace, argv, env=self.environment, stdout=stdout)


# --- reading: pg_dump ------------------------------------------------------------------------


def measure_dumps(bench: Bench, dataset: Dataset, key: str) -> Path:
    """The read limit (custom -Z0 and plain, to /dev/null) and what users run (pg_dump -Fc
    -f FILE). Returns the -Fc file, for the pg_restore baseline."""
    bench.checkpoint()
    bench.series[f"{key}.dump_custom_z0"].add(bench.run(["pg_dump", "-Fc", "-Z0", dataset.name]))
    bench.checkpoint()
    bench.series[f"{key}.dump_plain"].add(bench.run(["pg_dump", dataset.name]))
    archive = bench.workspace.path("dumps", f"{dataset.name}.dump")
    archive.parent.mkdir(exist_ok=True)
    bench.checkpoint()
    sample = bench.run(["pg_dump", "-Fc", "-f", str(archive), dataset.name])
    bench.series[f"{key}.dump_custom_file"].add(sample)
    bench.sizes[f"{key}.dump_custom_file"] = archive.stat().st_size
    return archive


def write_pipe_archive(bench: Bench, dataset: Dataset) -> Path:
    """``pg_dump -Fc -Z0`` through a pipe into a file: byte for byte the archive drkit stages
    for pg_restore (no data offsets). Not timed."""
    archive = bench.workspace.path("dumps", f"{dataset.name}.pipe.dump")
    with open(archive, "wb") as output:
        dump = subprocess.Popen(
            ["pg_dump", "-Fc", "-Z0", dataset.name],
            stdout=subprocess.PIPE,
            env=bench.environment,
        )
        assert dump.stdout is not None
        shutil.copyfileobj(dump.stdout, output, 1 << 20)
        if dump.wait() != 0:
            raise RuntimeError(f"pg_dump of {dataset.name} exited {dump.returncode}")
    return archive


# --- drkit backup ------------------------------------------------------------------------------


def measure_backup(bench: Bench, plan: Path, key: str) -> str:
    """One drkit backup; its snapshot id. Stores are emptied first, so every run writes to
    the same empty folders."""
    shutil.rmtree(bench.workspace.path("stores", plan.stem), ignore_errors=True)
    bench.checkpoint()
    outcome = bench.cli.backup(plan)
    document = outcome.document
    bench.series[key].add(outcome.sample, reported=float(document["seconds"]))
    bench.sizes[f"{key}.plaintext"] = int(document["plaintext_bytes"])
    bench.sizes[f"{key}.stored"] = int(document["stored_bytes"])
    return str(document["snapshot_id"])


def measure_fixed_cost(bench: Bench, plans: TinyPlans) -> None:
    """What a command costs before any data: ``drkit --help``, and backups of the tiny
    backend (their stores keep growing by a few KB per run, as in real use)."""
    bench.series["fixed.help"].add(bench.cli.help())
    for plan, key in ((plans.two_stores, "fixed.tiny_2"), (plans.with_restic, "fixed.tiny_restic")):
        outcome = bench.cli.backup(plan)
        bench.series[key].add(outcome.sample, reported=float(outcome.document["seconds"]))


# --- restoring ---------------------------------------------------------------------------------


def measure_pg_restore(bench: Bench, archive: Path, key: str, *, index: bool = False) -> None:
    """``pg_restore -j2`` of a local archive into a new database (CREATE DATABASE included,
    as in drkit's load phase). With ``index``, a copy of the archive gets its data offsets
    first (drkit/sources/pgarchive.py, both ways; they must agree), and the faster way's time counts."""
    times = {"index_search": 0.0, "index_walk": 0.0}
    if index:
        copy = archive.with_suffix(".indexed.dump")
        shutil.copyfile(archive, copy)
        archive = copy
        search = add_offsets(copy, method="search")
        walk = add_offsets(copy, method="walk")  # rewrites the same bytes when they agree
        if search.offsets != walk.offsets:
            raise RuntimeError(f"offsets disagree: {search.offsets} != {walk.offsets}")
        times = {"index_search": search.seconds, "index_walk": walk.seconds}
    target = bench.workspace.database_name("pg_restore")
    bench.checkpoint()
    started = time.monotonic()
    bench.server.create_database(target)
    sample = bench.run(
        ["pg_restore", "-j2", "--no-owner", "--no-privileges", "-d", target, str(archive)]
    )
    total = time.monotonic() - started + times["index_search"]
    bench.series[key].add(sample, total=total, **times)
    bench.server.drop_database(target)
    if index:
        archive.unlink()


def measure_restore(bench: Bench, plan: Path, snapshot_id: str, key: str) -> None:
    """``drkit restore --to`` a new database; phases from its --json output."""
    target = bench.workspace.database_name("drkit_restore")
    bench.checkpoint()
    outcome = bench.cli.restore(plan, snapshot_id, target)
    bench.series[key].add(outcome.sample, **outcome.phases)
    bench.server.drop_database(target)


def measure_drill(bench: Bench, plan: Path, snapshot_id: str, key: str) -> None:
    """``drkit drill`` of the snapshot into an ephemeral cluster; phases and RTO."""
    bench.checkpoint()
    outcome = bench.cli.drill(plan, snapshot_id)
    rto = float(outcome.document[0]["rto_seconds"])
    bench.series[key].add(outcome.sample, rto=rto, **outcome.phases)


# --- restic ------------------------------------------------------------------------------------


def measure_restic(bench: Bench, dataset: Dataset) -> ResticFigures:
    """A full backup to a restic repository, a 1% change, and a second backup: what each
    adds to the repository (du of its folder, and restic's own raw-data statistics)."""
    repository = bench.workspace.path("restic-repo")
    plan = write_plan(
        bench.workspace.path("plans", "restic.yaml"),
        name="restic",
        database_url=bench.server.url(dataset.name),
        key_path=bench.key,
        stores=[restic_store("restic", repository)],
    )
    figures = ResticFigures()
    for step in ("full", "after 1% change"):
        if step != "full":
            started = time.monotonic()
            figures.rows_changed = data.change_one_percent(bench.server, dataset.name)
            bench.sizes["restic.change_seconds"] = round(time.monotonic() - started)
        outcome = bench.cli.backup(plan)
        figures.backups.append(
            {
                "step": step,
                "sample": outcome.sample,
                "plaintext_bytes": int(outcome.document["plaintext_bytes"]),
                "du_bytes": folder_bytes(repository),
                "stats": restic_stats(bench, repository),
            }
        )
    return figures


def folder_bytes(folder: Path) -> int:
    """Disk usage of a folder (``du -sb``)."""
    result = subprocess.run(["du", "-sb", str(folder)], check=True, capture_output=True, text=True)
    return int(result.stdout.split()[0])


def restic_stats(bench: Bench, repository: Path) -> dict[str, Any]:
    """``restic stats --mode raw-data --json`` over the whole repository."""
    result = subprocess.run(
        ["restic", "-r", str(repository), "stats", "--mode", "raw-data", "--json"],
        env={**bench.environment, "RESTIC_PASSWORD": RESTIC_PASSWORD},
        check=True,
        capture_output=True,
        text=True,
    )
    stats: dict[str, Any] = json.loads(result.stdout)
    return stats
