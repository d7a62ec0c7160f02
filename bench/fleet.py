"""The fleet benchmark: drkit's catalog commands over many plans with long hourly history.

``python -m bench.fleet`` writes 1,000 plans (three stores in two regions, hourly backups,
weekly drills), fills a catalog with their history through drkit's own catalog code
(``Catalog.import_backups``, ``Catalog.record_drill``), and times ``drkit status``,
``drkit metrics``, ``drkit report`` and ``drkit run --due`` over all of them, on SQLite and on
PostgreSQL (a database of its own on the server, dropped afterwards). Each command is timed
twice: with the newest days of history only, then after the older history is added, so the
figures show whether time grows with the length of history. Rounds are interleaved; figures
are medians. Results go to bench/FLEET.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bench.measure import _wait_polling
from drkit.catalog import BackupEntry, Catalog, CopyEntry, DrillInput
from drkit.crypto import generate_keyfile
from drkit.repository.layout import artifact_key

ROOT = Path(__file__).resolve().parent.parent
STORES = (("east", "us-east-1"), ("west", "eu-west-1"), ("nfs", "us-east-1"))
BATCH = 2000
#: the issue's goals, seconds (memory goals in MiB below)
GOALS = {"status": (1.0, 2.0), "metrics": (10.0, 10.0), "report": (10.0, 10.0), "run": (2.0, 2.0)}
MEMORY_GOAL_MIB = 200


@dataclass(frozen=True)
class Command:
    name: str
    argv: tuple[str, ...]
    goal: str


@dataclass
class Figures:
    seconds: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    cpu: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    peak_mib: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    population: dict[str, tuple[int, float]] = field(default_factory=dict)


def write_plans(folder: Path, count: int, key: Path) -> None:
    folder.mkdir(parents=True)
    for number in range(count):
        name = f"svc-{number:04d}"
        document = {
            "version": 1,
            "name": name,
            "objectives": {"rpo": "2h", "rto": "30m"},
            "sources": [{"name": "db", "type": "sqlite", "path": f"/srv/{name}/app.db"}],
            "keys": [{"name": "primary", "type": "keyfile", "path": str(key)}],
            "stores": [
                {"name": store, "type": "filesystem", "path": f"/backups/{store}", "region": region}
                for store, region in STORES
            ],
            "copies": {"min_stores": 2, "min_regions": 2},
            "schedule": {"backup": "0 * * * *", "drill": "30 3 * * 1"},
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


@dataclass(frozen=True)
class StoredCopy:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SnapshotArtifact:
    """What the catalog reads of a manifest's artifact (``ArtifactLike``)."""

    source: str
    type: str
    format: str
    compression: str
    plaintext_size: int
    plaintext_sha256: str
    fingerprint: dict[str, Any]
    key_names: list[str]
    encrypted: StoredCopy | None
    raw: StoredCopy | None = None


@dataclass(frozen=True)
class SnapshotManifest:
    """What the catalog reads of a manifest (``ManifestLike``): plain data, so building a
    year of them costs the benchmark little beside the catalog it measures."""

    plan: str
    snapshot_id: str
    taken_at: datetime
    finished_at: datetime
    sources: list[str]
    artifacts: list[SnapshotArtifact]


def make_entry(plan: str, taken: datetime, serial: int) -> BackupEntry:
    snapshot_id = f"{taken:%Y%m%dT%H%M%SZ}-{serial:08x}"
    artifact = SnapshotArtifact(
        "db",
        "sqlite",
        "sqlite-backup",
        "zstd",
        50_000_000,
        "a" * 64,
        {"tables": {"orders": 1000}},
        ["primary"],
        StoredCopy(artifact_key(plan, snapshot_id, "db", "drkit"), 9_000_000, "b" * 64),
    )
    finished = taken + timedelta(seconds=95)
    manifest = SnapshotManifest(plan, snapshot_id, taken, finished, ["db"], [artifact])
    # one backup in 50 loses a store (degraded); the copy policy still holds
    failed = serial % 50 == 7
    copies = tuple(
        CopyEntry(store, region, "failed" if failed and store == "nfs" else "complete", 9_000_000)
        for store, region in STORES
    )
    return BackupEntry(
        manifest,
        taken,
        taken + timedelta(seconds=95),
        "degraded" if failed else "ok",
        "complete",
        copies,
        "bench",
        1,
        "d" * 64,
    )


def hours_between(first: datetime, last: datetime) -> Iterator[datetime]:
    moment = first
    while moment <= last:
        yield moment
        moment += timedelta(hours=1)


def populate(
    url: str, plans: int, first: datetime, last: datetime, serial: int
) -> tuple[int, float]:
    """Hourly backups of every plan from ``first`` to ``last``, and a drill every Monday;
    returns (snapshots, seconds)."""
    started = time.monotonic()
    count = 0
    names = [f"svc-{number:04d}" for number in range(plans)]
    clock = Clock()
    with Catalog.open(url, clock=clock) as catalog:
        batch: list[BackupEntry] = []
        for moment in hours_between(first, last):
            for name in names:
                serial += 1
                batch.append(make_entry(name, moment, serial))
                if len(batch) >= BATCH:
                    catalog.import_backups(batch)
                    count += len(batch)
                    batch = []
            if moment.weekday() == 0 and moment.hour == 3:
                for name in names:
                    record_drill(catalog, clock, name, moment, serial)
        if batch:
            catalog.import_backups(batch)
            count += len(batch)
    seconds = time.monotonic() - started
    if url.startswith("postgresql"):
        analyze(url)  # what autovacuum does after a bulk load; not counted in the rate
    return count, seconds


def analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ANALYZE")


class Clock:
    """The catalog's clock, set to each drill's time (its run is recorded then)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def record_drill(catalog: Catalog, clock: Clock, plan: str, moment: datetime, serial: int) -> None:
    clock.now = moment + timedelta(minutes=30)
    run_id = catalog.start_run(plan, "drill")
    catalog.record_drill(
        DrillInput(
            plan=plan,
            snapshot_id=f"{moment:%Y%m%dT%H%M%SZ}-{serial:08x}",
            store="east",
            started_at=moment + timedelta(minutes=30),
            finished_at=moment + timedelta(minutes=48),
            outcome="ok",
            rto_seconds=1080,
            rpo_seconds=1800,
            phases={"provision": 60, "fetch": 300, "decrypt": 120, "load": 540, "checks": 60},
            run_id=run_id,
        )
    )
    clock.now = moment + timedelta(minutes=48)
    catalog.finish_run(run_id, "ok")


def commands(plans_folder: Path, now: datetime | None = None) -> list[Command]:
    """The measured commands; ``run`` decides as of ``now`` (just after the newest backup),
    so nothing is due and it measures the runner's own cost, not backups."""
    folder = str(plans_folder)
    at = (now or datetime.now(UTC)).isoformat()
    return [
        Command("status", ("status", "--json", folder), "status"),
        Command("metrics", ("metrics", folder), "metrics"),
        Command(
            "report --since 90d", ("report", "--since", "90d", "--format", "json", folder), "report"
        ),
        Command("run --due", ("run", "--due", "--now", at, folder), "run"),
        Command("run --due --dry-run", ("run", "--due", "--dry-run", "--now", at, folder), "run"),
    ]


def measure(
    url: str, command: Command, home: Path, root: Path = ROOT
) -> tuple[float, float, float]:
    """(seconds, CPU seconds, peak MiB) of one drkit command (the drkit of checkout ``root``);
    its output is discarded."""
    environment = {**os.environ, "PYTHONPATH": str(root), "DRKIT_HOME": str(home)}
    argv = [sys.executable, "-m", "drkit", "-q", "--catalog", url, *command.argv]
    started = time.monotonic()
    with open(os.devnull, "wb") as sink, open(home / "errors.log", "ab") as errors:
        child = subprocess.Popen(argv, stdout=sink, stderr=errors, env=environment)
        status, usage, peak_kib = _wait_polling(child.pid)
    seconds = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 4):  # 4: an objective breached, a verdict, not a failure
        raise RuntimeError(f"drkit {' '.join(command.argv)} exited {code}; see {home}/errors.log")
    return seconds, usage.ru_utime + usage.ru_stime, peak_kib / 1024


def measure_rounds(
    figures: Figures,
    backend: str,
    url: str,
    history: str,
    work: Path,
    now: datetime,
    rounds: int,
) -> None:
    home = work / "home"
    for _ in range(rounds):
        for command in commands(
            work / "plans", now + timedelta(minutes=10)
        ):  # interleaved: one of each per round
            seconds, cpu, peak = measure(url, command, home)
            key = (backend, history, command.name)
            figures.seconds.setdefault(key, []).append(seconds)
            figures.cpu.setdefault(key, []).append(cpu)
            figures.peak_mib.setdefault(key, []).append(peak)
            print(
                f"{backend} {history} {command.name}: {seconds:.2f}s, {cpu:.2f}s CPU, "
                f"{peak:.0f} MiB",
                flush=True,
            )


def create_postgres_database(server: str) -> tuple[str, str]:
    import psycopg

    name = f"drkit_fleet_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name, f"{server}/{name}"


def drop_postgres_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_backend(
    figures: Figures, backend: str, url: str, options: argparse.Namespace, work: Path
) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    recent_first = now - timedelta(days=options.recent_days) + timedelta(hours=1)
    count, seconds = populate(url, options.plans, recent_first, now, serial=0)
    figures.population[f"{backend} recent"] = (count, seconds)
    print(f"{backend}: {count} snapshots in {seconds:.1f}s ({count / seconds:.0f}/s)", flush=True)
    label = f"{options.recent_days} days"
    measure_rounds(figures, backend, url, label, work, now, options.rounds)
    older_first = now - timedelta(days=options.days) + timedelta(hours=1)
    count, seconds = populate(
        url, options.plans, older_first, recent_first - timedelta(hours=1), serial=10**8
    )
    figures.population[f"{backend} older"] = (count, seconds)
    print(f"{backend}: {count} more snapshots in {seconds:.1f}s ({count / seconds:.0f}/s)")
    label = f"{options.days} days"
    measure_rounds(figures, backend, url, label, work, now, options.rounds)


def render(figures: Figures, options: argparse.Namespace, started: datetime) -> str:
    lines = [
        "# Fleet benchmark",
        "",
        f"`python -m bench.fleet --plans {options.plans} --days {options.days} "
        f"--recent-days {options.recent_days} --rounds {options.rounds}`, started "
        f"{started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores (load average at the start "
        f"{os.getloadavg()[0]:.1f}: other work shared the machine).",
        "",
        f"{options.plans} plans, each with three filesystem stores in two regions, copy policy "
        "2 stores / 2 regions, hourly backups (one in 50 degraded), a drill every Monday. "
        "The catalog is filled through `Catalog.import_backups` and `Catalog.record_drill`; "
        "no retention is applied (every hourly snapshot is kept, the worst case for history).",
        "",
        "## Population",
        "",
        "| catalog | snapshots | seconds | snapshots/s | goal |",
        "|---|---:|---:|---:|---|",
    ]
    for name, (count, seconds) in figures.population.items():
        rate = count / seconds if seconds else 0
        lines.append(
            f"| {name} | {count:,} | {seconds:.1f} | {rate:,.0f} | ≥ 5,000/s "
            f"{'met' if rate >= 5000 else 'missed'} |"
        )
    lines += [
        "",
        "## Commands over every plan",
        "",
        f"Median of {options.rounds} interleaved rounds (min-max), peak memory of the drkit "
        "process, and its CPU time (user + system: what the command costs, whatever else "
        "runs on the machine; the wall time includes waiting for the CPU and, on PostgreSQL, "
        "for the server). Each command is timed with the newest days of history, then again "
        "after the older history was added: time should not grow with it.",
        "",
        "| catalog | command | history | seconds (min-max) | CPU s | peak MiB | goal |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for (backend, history, name), values in figures.seconds.items():
        command = next(c for c in commands(Path(".")) if c.name == name)
        goal = GOALS[command.goal][0 if backend == "postgresql" else 1]
        median = statistics.median(values)
        peak = max(figures.peak_mib[(backend, history, name)])
        memory_ok = command.goal not in ("report", "metrics") or peak <= MEMORY_GOAL_MIB
        verdict = "met" if median <= goal and memory_ok else "missed"
        memory_goal = f", ≤ {MEMORY_GOAL_MIB} MiB" if command.goal in ("report", "metrics") else ""
        lines.append(
            f"| {backend} | `drkit {name}` | {history} | {median:.2f} "
            f"({min(values):.2f}-{max(values):.2f}) | "
            f"{statistics.median(figures.cpu[(backend, history, name)]):.2f} | {peak:.0f} | "
            f"≤ {goal:g} s{memory_goal} "
            f"{verdict} |"
        )
    return "\n".join(lines) + "\n"


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--plans", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30, help="history length (default 30)")
    parser.add_argument("--recent-days", type=int, default=3, help="first, shorter history")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "FLEET.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="drkit-fleet-"))
    figures = Figures()
    try:
        (work / "home").mkdir()
        key = work / "primary.key"
        generate_keyfile(key)
        write_plans(work / "plans", options.plans, key)
        for backend in options.backends.split(","):
            if backend == "sqlite":
                run_backend(figures, backend, f"sqlite:///{work / 'catalog.db'}", options, work)
                continue
            name, url = create_postgres_database(options.postgres)
            try:
                run_backend(figures, backend, url, options, work)
            finally:
                drop_postgres_database(options.postgres, name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    options.output.write_text(render(figures, options, started))
    print(f"wrote {options.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
