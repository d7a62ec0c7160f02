"""``bench/run``: build the databases, run every measurement in interleaved rounds, clean up,
and write bench/RESULTS.md."""

from __future__ import annotations

import argparse
import logging
import pickle
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from bench import dataset as data
from bench import machine, profile, report
from bench.dataset import Dataset
from bench.drkit_cli import BACKUP_IMPORTS
from bench.moto import stop_moto
from bench.scenarios import (
    Bench,
    Plans,
    ResticFigures,
    TinyPlans,
    measure_backup,
    measure_drill,
    measure_dumps,
    measure_fixed_cost,
    measure_pg_restore,
    measure_restic,
    measure_restore,
    write_pipe_archive,
)
from bench.server import PostgresServer
from bench.workspace import Workspace, raise_on_sigterm

log = logging.getLogger("bench")
T = TypeVar("T")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass
class Options:
    render: Path | None
    scale: int
    small_scale: int
    runs: int
    quick: bool
    output: Path
    tmpdir: Path | None
    server: PostgresServer
    keep: bool
    references: bool = True


@dataclass
class Results:
    """Everything RESULTS.md reports."""

    options: Options
    machine: dict[str, str]
    versions: dict[str, str]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    datasets: dict[str, Dataset] = field(default_factory=dict)
    plain_bytes: dict[str, int] = field(default_factory=dict)
    bench: Bench | None = None
    restic: ResticFigures | None = None
    profiles: list[profile.Profile] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    load_after: str = ""


def parse_arguments(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark drkit backup, restore and drill against pg_dump/pg_restore.",
        epilog="Example: bench/run --quick     # a ~100 MB smoke run",
    )
    parser.add_argument("--scale", type=int, help="pgbench scale of the main database (60)")
    parser.add_argument("--small-scale", type=int, help="scale of the small database (6)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; figures are medians (3)")
    parser.add_argument("--quick", action="store_true", help="scale 6 and 1: a smoke run")
    parser.add_argument("--output", type=Path, default=RESULTS, help="report file")
    parser.add_argument("--tmpdir", type=Path, help="where the workspace goes ($TMPDIR)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--keep", action="store_true", help="keep the workspace folder")
    parser.add_argument(
        "--no-references",
        action="store_true",
        help="skip the pgBackRest and borgmatic rows (python -m bench.references)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="PICKLE",
        help="only write the report again, from the results a run kept in "
        "$TMPDIR/drkit-bench-last-results.pickle",
    )
    arguments = parser.parse_args(argv)
    scale = arguments.scale or (6 if arguments.quick else 60)
    small = arguments.small_scale or max(1, scale // 10)
    if arguments.runs < 1 or scale < 1 or small < 1:
        parser.error("--runs, --scale and --small-scale must be at least 1")
    return Options(
        render=arguments.render,
        scale=scale,
        small_scale=small,
        runs=arguments.runs,
        quick=arguments.quick,
        output=arguments.output,
        tmpdir=arguments.tmpdir,
        server=PostgresServer(arguments.host, arguments.port, arguments.user),
        keep=arguments.keep,
        references=not arguments.no_references,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_arguments(argv)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    if options.render is not None:
        return rerender(options.render, options.output)
    raise_on_sigterm()
    started = time.monotonic()
    workspace = Workspace(options.server, options.tmpdir)
    workspace.keep = options.keep
    log.info("workspace %s, databases %s*", workspace.root, workspace.prefix)
    try:
        results = run_benchmark(workspace, options)
    except KeyboardInterrupt:
        log.info("interrupted: cleaning up")
        return 130
    finally:
        workspace.close()
    results.seconds = time.monotonic() - started
    results.load_after = machine.load_average()
    options.output.write_text(report.render(results))
    assert results.bench is not None
    for target in report.targets(results.bench):
        verdict = "met" if target.met else "NOT MET"
        print(f"{target.name}: {target.measured:.2f}{target.unit} ({verdict})")
    saved = Path(tempfile.gettempdir()) / "drkit-bench-last-results.pickle"
    saved.write_bytes(pickle.dumps(results))
    log.info("wrote %s (results kept in %s) after %.0f s", options.output, saved, results.seconds)
    if options.references:
        return run_references(options)
    return 0


def run_references(options: Options) -> int:
    """pgBackRest and borgmatic beside drkit at the small scale, into the same report."""
    from bench import references

    missing = references.missing_tools()
    if missing:
        log.warning("no reference rows: %s missing (%s)", ", ".join(missing), references.INSTALL)
        return 0
    argv = ["--scale", str(options.small_scale), "--rounds", str(options.runs)]
    argv += ["--output", str(options.output)]
    return references.main(argv + (["--tmpdir", str(options.tmpdir)] if options.tmpdir else []))


def rerender(saved: Path, output: Path) -> int:
    """Write the report from a run's saved results (after changing only how it reads)."""
    results = pickle.loads(saved.read_bytes())  # a file this program wrote
    output.write_text(report.render(results))
    log.info("wrote %s from %s", output, saved)
    return 0


def run_benchmark(workspace: Workspace, options: Options) -> Results:
    server = options.server
    results = Results(options, machine.describe(workspace.root), machine.versions(server))
    bench = results.bench = Bench(workspace, server)
    with _phase(results, "build the databases"):
        for label, scale in (("main", options.scale), ("small", options.small_scale)):
            dataset = data.build(server, workspace.database_name(label), scale)
            results.datasets[label] = dataset
            results.plain_bytes[label] = plain_dump_bytes(bench, dataset)
    # Created up front: the first command on a new catalog migrates it with alembic, which
    # would add to the peak memory of whichever command came first.
    bench.series["create_catalog"].add(bench.cli.create_catalog())
    main_plans = bench.plans_for(results.datasets["main"], "main")
    small_plans = bench.plans_for(results.datasets["small"], "small", with_s3=True)
    tiny_plans = bench.tiny_plans()
    for _ in range(options.runs):
        bench.series["idle"].add(bench.cli.idle())
        for step, modules in BACKUP_IMPORTS.items():
            bench.series[f"imports.{step}"].add(bench.cli.imports(modules))
    for number in range(options.runs):
        with _phase(results, f"round {number + 1} of {options.runs}"):
            main_round(bench, results.datasets["main"], main_plans, number)
            small_round(bench, results.datasets["small"], small_plans, tiny_plans, number)
    stop_moto(workspace)
    if profile.is_available():
        with _phase(results, "profiles"):
            results.profiles = profile_runs(bench, main_plans, results.datasets["main"])
    with _phase(results, "restic"):
        results.restic = measure_restic(bench, results.datasets["main"])
    return results


def main_round(bench: Bench, dataset: Dataset, plans: Plans, number: int) -> None:
    """Every measurement on the main database, once. Backups and restores rotate their order
    from round to round, so none always runs first or right after the same neighbour."""
    archive = measure_dumps(bench, dataset, "main")
    pipe_archive = write_pipe_archive(bench, dataset)
    snapshots: dict[str, str] = {}
    backups: list[tuple[Path, str]] = [
        (plans.one_store, "main.backup_1"),
        (plans.three_stores, "main.backup_3"),
        (plans.level_one, "main.backup_1_level1"),
    ]
    for plan, key in rotated(backups, number):
        snapshots[key] = measure_backup(bench, plan, key)
    snapshot = snapshots["main.backup_1"]
    restores: list[Callable[[], None]] = [
        lambda: measure_pg_restore(bench, archive, "main.pg_restore_j2"),
        lambda: measure_restore(bench, plans.one_store, snapshot, "main.restore"),
        lambda: measure_drill(bench, plans.one_store, snapshot, "main.drill"),
        lambda: measure_pg_restore(bench, pipe_archive, "main.pipe_restore_j2"),
        lambda: measure_pg_restore(bench, pipe_archive, "main.indexed_restore_j2", index=True),
    ]
    for step in rotated(restores, number):
        step()
    pipe_archive.unlink()


def rotated(items: list[T], number: int) -> list[T]:
    """``items`` starting at position ``number`` (modulo their count)."""
    shift = number % len(items)
    return items[shift:] + items[:shift]


def small_round(bench: Bench, dataset: Dataset, plans: Plans, tiny: TinyPlans, number: int) -> None:
    """The small database: memory and restore at a second size, the S3 case (moto is slow),
    and the fixed cost of a command (the tiny backend)."""
    archive = measure_dumps(bench, dataset, "small")
    snapshot = measure_backup(bench, plans.one_store, "small.backup_1")
    measure_backup(bench, plans.three_stores, "small.backup_3")
    assert plans.with_s3 is not None
    measure_backup(bench, plans.with_s3, "small.backup_s3")
    restores: list[Callable[[], None]] = [
        lambda: measure_pg_restore(bench, archive, "small.pg_restore_j2"),
        lambda: measure_restore(bench, plans.one_store, snapshot, "small.restore"),
        lambda: measure_drill(bench, plans.one_store, snapshot, "small.drill"),
    ]
    for step in rotated(restores, number):
        step()
    measure_fixed_cost(bench, tiny)


def profile_runs(bench: Bench, plans: Plans, dataset: Dataset) -> list[profile.Profile]:
    """One profiled backup (3 stores) and restore of the main database, outside the timed
    rounds (py-spy costs a little)."""
    folder = bench.workspace.folder("profiles")
    backup = profile.profile_command(
        bench.cli, ["backup", str(plans.three_stores)], folder / "backup.txt"
    )
    snapshot = measure_backup(bench, plans.one_store, "profile.backup_1")
    target = bench.workspace.database_name("profile_restore")
    arguments = ["restore", str(plans.one_store), "--snapshot", snapshot, "--yes"]
    arguments += ["--to", f"orders-db={target}"]
    restore = profile.profile_command(bench.cli, arguments, folder / "restore.txt")
    bench.server.drop_database(target)
    return [backup, restore]


def plain_dump_bytes(bench: Bench, dataset: Dataset) -> int:
    """Size of the plain SQL dump (counted, not written)."""
    dump = subprocess.Popen(
        ["pg_dump", dataset.name], stdout=subprocess.PIPE, env=bench.environment
    )
    assert dump.stdout is not None
    size = 0
    while chunk := dump.stdout.read(1 << 20):
        size += len(chunk)
    if dump.wait() != 0:
        raise RuntimeError(f"pg_dump of {dataset.name} exited {dump.returncode}")
    return size


class _phase:
    """Logs a phase and records how long it took."""

    def __init__(self, results: Results, name: str):
        self.results, self.name = results, name

    def __enter__(self) -> None:
        log.info("%s ...", self.name)
        self.started = time.monotonic()

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            seconds = time.monotonic() - self.started
            self.results.durations[self.name] = seconds
            log.info("%s: %.0f s", self.name, seconds)
