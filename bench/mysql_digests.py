"""What the per-table content digests of a MariaDB backup cost: the backup's capture (the
dump streamed through ``DumpReader``) against the same reader with digests turned off, fed the
same dump bytes, in interleaved rounds on one scratch database (dropped afterwards).

    python -m bench.mysql_digests --rows 1000000 --rounds 5

Prints the median capture time and whole-backup time (one filesystem store, zstd, encrypted),
the median time ``DumpReader`` takes over the dump with and without digests, and the digests'
share (difference of the medians) of each.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql
import yaml

from drkit.actions.backup import backup
from drkit.actions.resources import open_resources
from drkit.crypto import generate_keyfile
from drkit.plan.loader import parse_plan
from drkit.plan.schema import MysqlSource
from drkit.sources import mysql
from drkit.sources.mysql import MysqlDatabase
from drkit.sources.mysql_dump import DumpReader

CHUNK = 1 << 20


class _NoDigest:
    def update(self, data: object) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


class ReaderWithoutDigests(DumpReader):
    """Row counting only, as before content digests."""

    def _digest(self, table: str) -> Any:
        return _NoDigest()


def feed_seconds(reader: DumpReader, data: bytes) -> float:
    """CPU seconds ``reader`` spends on the dump (CPU, not wall clock: the machine is shared)."""
    view = memoryview(data)
    chunks = [bytes(view[start : start + CHUNK]) for start in range(0, len(data), CHUNK)]
    started = time.process_time()
    for chunk in chunks:
        reader.feed(chunk)
    reader.finish()
    return time.process_time() - started


def capture(source: MysqlDatabase) -> tuple[bytes, float]:
    started = time.perf_counter()
    with source.snapshot() as captured:
        data = b"".join(captured.chunks)
    return data, time.perf_counter() - started


def backup_seconds(url: str, workspace: Path) -> float:
    """A whole ``drkit backup`` of the database to one filesystem store, in process."""
    key = workspace / "bench.key"
    if not key.exists():
        generate_keyfile(key)
    plan = parse_plan(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "bench-mysql",
                "objectives": {"rpo": "1h", "rto": "1h"},
                "sources": [{"name": "ledger", "type": "mysql", "url": url}],
                "keys": [{"name": "bench", "type": "keyfile", "path": str(key)}],
                "stores": [
                    {
                        "name": "local",
                        "type": "filesystem",
                        "path": str(workspace / "store"),
                        "region": "here",
                    }
                ],
                "copies": {"min_stores": 1, "min_regions": 1},
            }
        )
    )
    started = time.perf_counter()
    result = backup(open_resources(plan, None))
    seconds = time.perf_counter() - started
    if result.error:
        raise SystemExit(f"backup failed: {result.error}")
    shutil.rmtree(workspace / "store")
    return seconds


def make_database(host: str, port: int, name: str, rows: int) -> None:
    connection = pymysql.connect(host=host, port=port, user="root", autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
        cursor.execute(f"USE `{name}`")  # the seq_1_to_N tables live in the current database
        cursor.execute(
            f"CREATE TABLE `{name}`.ledger (id INT PRIMARY KEY, account INT, amount DECIMAL(12,2),"
            " note VARCHAR(120), at DATETIME)"
        )
        cursor.execute(
            f"INSERT INTO `{name}`.ledger SELECT seq, seq MOD 997, seq * 1.25,"
            " CONCAT('payment ', MD5(seq), ' ref ', seq), '2026-01-01' + INTERVAL seq SECOND"
            f" FROM seq_1_to_{rows}"
        )
    connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    arguments = parser.parse_args()
    name = f"drkit_bench_{secrets.token_hex(4)}"
    make_database(arguments.host, arguments.port, name, arguments.rows)
    try:
        url = f"mysql://root@{arguments.host}:{arguments.port}/{name}"
        source = MysqlDatabase(MysqlSource(name="bench", type="mysql", url=url))
        captures, with_digests, without = [], [], []
        backups: dict[bool, list[float]] = {True: [], False: []}
        workspace = Path(tempfile.mkdtemp(prefix="drkit-bench-"))
        for round_number in range(arguments.rounds):
            data, seconds = capture(source)
            captures.append(seconds)
            for digests in (True, False) if round_number % 2 == 0 else (False, True):
                mysql.DumpReader = DumpReader if digests else ReaderWithoutDigests  # type: ignore[misc]
                try:
                    backups[digests].append(backup_seconds(url, workspace))
                finally:
                    mysql.DumpReader = DumpReader  # type: ignore[misc]
            readers: list[tuple[list[float], DumpReader]] = [
                (with_digests, DumpReader()),
                (without, ReaderWithoutDigests()),
            ]
            if round_number % 2:
                readers.reverse()
            for figures, reader in readers:
                figures.append(feed_seconds(reader, data))
        shutil.rmtree(workspace)
        median_capture = statistics.median(captures)
        median_backup = statistics.median(backups[True])
        median_backup_without = statistics.median(backups[False])
        cost = statistics.median(with_digests) - statistics.median(without)
        print(f"dump: {len(data) / 1e6:.1f} MB, {arguments.rows} rows, {arguments.rounds} rounds")
        print(f"capture (mariadb-dump + DumpReader with digests): {median_capture:.2f} s median")
        print(f"DumpReader with digests: {statistics.median(with_digests):.3f} CPU s median")
        print(f"DumpReader without digests: {statistics.median(without):.3f} CPU s median")
        print(
            f"drkit backup to one filesystem store: {median_backup:.2f} s median with digests"
            f" ({min(backups[True]):.2f}-{max(backups[True]):.2f}), {median_backup_without:.2f} s"
            f" without ({min(backups[False]):.2f}-{max(backups[False]):.2f}):"
            f" {median_backup / median_backup_without:.3f}x"
        )
        print(
            f"digest CPU in DumpReader: {cost:.3f} s = {100 * cost / median_backup:.1f}% of the"
            f" backup, {100 * cost / median_capture:.1f}% of the capture alone"
        )
    finally:
        connection = pymysql.connect(host=arguments.host, port=arguments.port, user="root")
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
