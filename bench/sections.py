"""The measurement sections of RESULTS.md: backup, backup with S3, restore, memory, restic."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from bench.markdown import mebibytes, megabytes, seconds, spread, table
from bench.measure import Series, ratio

if TYPE_CHECKING:
    from bench.main import Results
    from bench.scenarios import Bench, ResticFigures

IMPORT_STEPS = ("command", "catalog", "source")
TIMING_HEADER = ["command", "median", "range (s)", "MB/s of archive", "CPU s (process tree)"]


def _timing_row(name: str, series: Series, archive_bytes: int) -> list[str]:
    return [
        name,
        seconds(series.seconds),
        spread(series),
        f"{archive_bytes / series.seconds / 1e6:,.0f}",
        f"{series.cpu_seconds:.1f}",
    ]


def _backup_rows(bench: Bench) -> list[list[str]]:
    series, size = bench.series, bench.sizes["main.backup_1.plaintext"]
    return [
        _timing_row(
            "`pg_dump -Fc -Z0 > /dev/null` (read limit)", series["main.dump_custom_z0"], size
        ),
        _timing_row("`pg_dump > /dev/null` (plain)", series["main.dump_plain"], size),
        _timing_row(
            "`pg_dump -Fc -f FILE` (what users run)", series["main.dump_custom_file"], size
        ),
        _timing_row("drkit backup, 1 filesystem store", series["main.backup_1"], size),
        _timing_row("drkit backup, 3 filesystem stores", series["main.backup_3"], size),
        _timing_row(
            "drkit backup, 1 filesystem store, zstd level 1 (not the default)",
            series["main.backup_1_level1"],
            size,
        ),
    ]


def backup_section(bench: Bench) -> list[str]:
    series = bench.series
    limit = series["main.dump_custom_z0"].seconds
    one, three = series["main.backup_1"].seconds, series["main.backup_3"].seconds
    users = series["main.dump_custom_file"].seconds
    return [
        "## Backup (main database)",
        "",
        "drkit runs `pg_dump -Fc -Z0` into a pipe, compresses with zstd level 3, encrypts "
        "(AES-256-GCM) and writes to every store at once. Times are wall clock of the whole "
        "command (Python start, catalog and manifest included). CPU is user + system time of "
        "the process and the children it waited for (pg_dump); the PostgreSQL backend's CPU "
        "is not in it.",
        "",
        *table(TIMING_HEADER, _backup_rows(bench)),
        f"- backup / read limit: 1 store {ratio(one, limit):.2f}x, "
        f"3 stores {ratio(three, limit):.2f}x",
        f"- backup / `pg_dump -Fc -f FILE`: 1 store {ratio(one, users):.2f}x, "
        f"3 stores {ratio(three, users):.2f}x",
        f"- 3 stores / 1 store: {ratio(three, one):.2f}x",
        f"- zstd level 1 instead of 3: {ratio(series['main.backup_1_level1'].seconds, one):.2f}x "
        f"the time, {megabytes(bench.sizes['main.backup_1_level1.stored'])} stored instead of "
        f"{megabytes(bench.sizes['main.backup_1.stored'])}",
        f"- drkit's own timer (`seconds` in --json), median: 1 store "
        f"{seconds(series['main.backup_1'].value('reported'))}, 3 stores "
        f"{seconds(series['main.backup_3'].value('reported'))}",
        "",
    ]


def s3_section(bench: Bench) -> list[str]:
    series, size = bench.series, bench.sizes["small.backup_1.plaintext"]
    one, s3 = series["small.backup_1"].seconds, series["small.backup_s3"].seconds
    rows = [
        _timing_row(
            "`pg_dump -Fc -Z0 > /dev/null` (read limit)", series["small.dump_custom_z0"], size
        ),
        _timing_row("drkit backup, 1 filesystem store", series["small.backup_1"], size),
        _timing_row("drkit backup, 3 filesystem stores", series["small.backup_3"], size),
        _timing_row("drkit backup, 2 filesystem + 1 S3 (moto)", series["small.backup_s3"], size),
    ]
    return [
        "## Backup with an S3 store (small database)",
        "",
        "moto's server (127.0.0.1, a separate process) keeps objects in memory and runs on the "
        "same 2 cores, so this case uses the small database and says little about real S3.",
        "",
        *table(TIMING_HEADER, rows),
        f"- 2 filesystem + S3 / 1 store: {ratio(s3, one):.2f}x; 3 filesystem / 1 store: "
        f"{ratio(series['small.backup_3'].seconds, one):.2f}x; 2 filesystem + S3 / read limit: "
        f"{ratio(s3, series['small.dump_custom_z0'].seconds):.2f}x",
        "",
    ]


def _restore_row(name: str, series: Series, total: str, load: str, phases: str) -> list[str]:
    return [
        name,
        seconds(series.value(total) if total else series.seconds),
        spread(series, total or None),
        seconds(series.value(load)) if load else "",
        phases,
        f"{series.cpu_seconds:.1f}",
    ]


def _restore_rows(bench: Bench) -> list[list[str]]:
    series = bench.series
    restore, drill = series["main.restore"], series["main.drill"]
    pipe, indexed = series["main.pipe_restore_j2"], series["main.indexed_restore_j2"]
    offsets = (
        f"adding offsets {seconds(indexed.value('index_search'))} by search "
        f"(included), {seconds(indexed.value('index_walk'))} by walking every chunk"
    )
    return [
        _restore_row(
            "`pg_restore -j2` of the `pg_dump -Fc -f FILE` file (baseline)",
            series["main.pg_restore_j2"],
            "total",
            "",
            "",
        ),
        _restore_row(
            "drkit restore --to NEWDB",
            restore,
            "",
            "load",
            _phases(restore, ("fetch", "decrypt", "verify")),
        ),
        _restore_row(
            "drkit drill (ephemeral cluster)",
            drill,
            "",
            "load",
            _phases(drill, ("provision", "fetch", "decrypt", "checks")),
        ),
        _restore_row(
            "`pg_restore -j2` of the `-Fc -Z0` archive as drkit stages it (written through a "
            "pipe: no data offsets)",
            pipe,
            "total",
            "",
            "",
        ),
        _restore_row(
            "the same archive with data offsets added first (drkit/sources/pgarchive.py)",
            indexed,
            "total",
            "",
            offsets,
        ),
    ]


def restore_section(bench: Bench) -> list[str]:
    series = bench.series
    baseline = series["main.pg_restore_j2"].value("total")
    restore, drill = series["main.restore"], series["main.drill"]
    pipe, indexed = series["main.pipe_restore_j2"], series["main.indexed_restore_j2"]
    small, small_baseline = series["small.restore"], series["small.pg_restore_j2"].value("total")
    header = ["command", "median total", "range (s)", "load phase", "other phases", "CPU s"]
    return [
        "## Restore (main database)",
        "",
        "Every restore goes into a new database; `pg_restore` times include CREATE DATABASE, "
        "as drkit's load phase does. drkit restore loads into the same server as the "
        "baseline; the drill loads into a throwaway cluster that drkit starts (fsync off). "
        "Phases are drkit's own (--json), medians. CPU is that of the command's process tree "
        "(pg_restore, and drkit with it); the server's is not counted.",
        "",
        *table(header, _restore_rows(bench)),
        f"- restore / pg_restore -j2: total {ratio(restore.seconds, baseline):.2f}x, load phase "
        f"{ratio(restore.value('load'), baseline):.2f}x",
        f"- drill load / pg_restore -j2: {ratio(drill.value('load'), baseline):.2f}x; drill "
        f"total {ratio(drill.seconds, baseline):.2f}x (RTO measured by the drill: "
        f"{seconds(drill.value('rto'))})",
        f"- data offsets: `pg_restore -j2` of the staged archive {seconds(pipe.value('total'))} "
        f"without them, {seconds(indexed.value('total'))} with them, search included "
        f"({ratio(indexed.value('total'), pipe.value('total')):.2f}x); drkit adds them itself "
        "before its load",
        f"- small database: drkit restore {seconds(small.seconds)} (range {spread(small)} s; "
        f"load {seconds(small.value('load'))}), `pg_restore -j2` of the `pg_dump -Fc` file "
        f"{seconds(small_baseline)}: {ratio(small.seconds, small_baseline):.2f}x",
        "",
    ]


def fixed_cost_section(bench: Bench) -> list[str]:
    """What a command costs before any data: start-up, plan, catalog, stores."""
    series = bench.series
    header = ["command", "median", "range (s)", "drkit's own timer", "CPU s", "peak RSS"]
    rows = [
        [
            name,
            seconds(series[key].seconds),
            spread(series[key]),
            seconds(series[key].value("reported")) if "reported" in series[key].values else "",
            f"{series[key].cpu_seconds:.2f}",
            mebibytes(series[key].peak_rss_kib),
        ]
        for name, key in (
            ("`drkit --help`", "fixed.help"),
            ("`drkit --version`", "idle"),
            ("backup of a tiny SQLite + config plan, 2 filesystem stores", "fixed.tiny_2"),
            ("the same plan with a restic store added", "fixed.tiny_restic"),
        )
    ]
    return [
        "## Fixed cost (a tiny backend)",
        "",
        "A SQLite database of 500 rows and a one-file config folder: what a command costs "
        "before there is data to move (Python, imports, plan, catalog, stores, restic's key "
        "derivation per run). The restic repository exists already, as for every backup but "
        "the first.",
        "",
        *table(header, rows),
    ]


def _phases(series: Series, names: tuple[str, ...]) -> str:
    return ", ".join(
        f"{name} {seconds(series.value(name))}" for name in names if name in series.values
    )


def memory_section(results: Results, bench: Bench) -> list[str]:
    rows = []
    for key, name in (
        ("backup_1", "backup, 1 filesystem store"),
        ("backup_3", "backup, 3 filesystem stores"),
        ("backup_s3", "backup, 2 filesystem + S3"),
        ("restore", "restore"),
        ("drill", "drill"),
    ):
        cells = [name]
        for size in ("main", "small"):
            series = bench.series.get(f"{size}.{key}")
            cells.append(
                f"{mebibytes(series.median_rss_kib)} (max {series.peak_rss_kib / 1024:.1f})"
                if series
                else "–"
            )
        rows.append(cells)
    main, small = results.datasets["main"], results.datasets["small"]
    header = ["drkit command", f"main (scale {main.scale})", f"small (scale {small.scale})"]
    return [
        "## Memory",
        "",
        "Peak resident memory of the drkit process itself (VmHWM from /proc, polled every "
        "20 ms; pg_dump, pg_restore and restic are separate processes and not counted): "
        "median over the runs, and the highest (the targets use the highest). For scale: `drkit --version` (Python and the command line, "
        f"doing nothing) peaks at {mebibytes(bench.series['idle'].peak_rss_kib)}; importing "
        "what a backup of a PostgreSQL source uses, and nothing else, peaks at "
        f"{_imports(bench)}. Every command below ran against an existing catalog; the first "
        "command on a new catalog creates it with alembic (`drkit catalog upgrade` here: "
        f"{mebibytes(bench.series['create_catalog'].peak_rss_kib)}).",
        "",
        *table(header, rows),
    ]


def _imports(bench: Bench) -> str:
    """``A MiB (command), +B MiB (catalog), +C MiB (source) = D MiB``."""
    steps = [bench.series[f"imports.{step}"].peak_rss_kib for step in IMPORT_STEPS]
    parts = [f"{mebibytes(steps[0])} with the backup command (click, pydantic, cryptography)"]
    parts += [
        f"{(now - before) / 1024:+.1f} MiB for {what}"
        for (before, now), what in zip(
            itertools.pairwise(steps),
            ("the catalog (SQLAlchemy)", "the PostgreSQL source (psycopg)"),
            strict=True,
        )
    ]
    return ", ".join(parts) + f", {mebibytes(steps[-1])} in all"


def _restic_rows(restic: ResticFigures) -> list[list[str]]:
    return [
        [
            backup["step"],
            seconds(backup["sample"].seconds),
            megabytes(backup["plaintext_bytes"]),
            megabytes(backup["du_bytes"]),
            megabytes(backup["stats"].get("total_size", 0)),
            str(backup["stats"].get("total_blob_count", "?")),
        ]
        for backup in restic.backups
    ]


def restic_section(results: Results) -> list[str]:
    restic = results.restic
    if restic is None or results.bench is None or len(restic.backups) < 2:
        return []
    full, second = restic.backups
    added = second["du_bytes"] - full["du_bytes"]
    added_stats = second["stats"].get("total_size", 0) - full["stats"].get("total_size", 0)
    header = ["backup", "time", "stream", "repository (du)", "raw data (restic stats)", "blobs"]
    return [
        "## restic store: a second backup after a 1% change",
        "",
        "A plan with one restic store, created by drkit (`init: true`; restic 0.14 makes a "
        "version 2 repository, which compresses). restic gets the raw `-Fc -Z0` stream and "
        "deduplicates, compresses and encrypts it itself. Between the two backups, "
        f"{restic.rows_changed:,} rows were updated (`UPDATE ... WHERE random() < 0.01` on "
        "pgbench_accounts and events).",
        "",
        *table(header, _restic_rows(restic)),
        f"- bytes added by the second backup: {megabytes(added)} on disk (du), "
        f"{megabytes(added_stats)} of raw data (restic stats), "
        f"{ratio(added, full['du_bytes']):.0%} of the first backup. For comparison, one "
        "encrypted drkit artifact of the same database (zstd-3, filesystem store) is "
        f"{megabytes(results.bench.sizes['main.backup_1.stored'])}.",
        "- Why so much: the updated rows are scattered over every table's pages, and "
        "PostgreSQL writes each new row version elsewhere, so the dump's row order changes "
        "throughout. restic cuts the stream into content-defined chunks of about 1 MiB "
        "(thousands of rows each); nearly every chunk holds a changed or moved row.",
        "",
    ]
