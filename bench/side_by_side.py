"""``python -m bench.side_by_side``: ``drkit restore`` of a plan of four sources (PostgreSQL,
MariaDB, SQLite, files) one source at a time (``--parallel 1``) against two at a time
(``--parallel 2``, the default on 2 cores), in interleaved rounds, into new targets.

Needs PostgreSQL on 127.0.0.1:5432 and MariaDB on 127.0.0.1:3306 (root, no password), as the
tests do. Prints a Markdown table; its figures go into RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import statistics
import time
from pathlib import Path

import pymysql

from bench import dataset as data
from bench.drkit_cli import DrkitCli
from bench.main import rotated
from bench.measure import run_timed
from bench.plans import filesystem_store, write_plan
from bench.scenarios import Bench
from bench.server import PostgresServer
from bench.workspace import Workspace, raise_on_sigterm

log = logging.getLogger("bench.side_by_side")
MYSQL_ROWS = """INSERT INTO ledger (id, account, note, amount)
SELECT seq, seq % 1000, md5(seq), seq / 7 FROM seq_1_to_{rows}"""


def mysql(statement: str, database: str | None = None) -> None:
    connection = pymysql.connect(
        host="127.0.0.1", user="root", password="", database=database, autocommit=True
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def build_sources(bench: Bench, scale: int) -> list[dict[str, object]]:
    workspace = bench.workspace
    database = data.build(bench.server, workspace.database_name("side"), scale)
    schema = workspace.database_name("side_my")
    mysql(f"CREATE DATABASE `{schema}`")
    mysql(
        "CREATE TABLE ledger (id INT PRIMARY KEY, account INT, note CHAR(32), "
        "amount DECIMAL(12,2), KEY (account))",
        schema,
    )
    mysql(MYSQL_ROWS.format(rows=scale * 50_000), schema)
    sqlite_path = workspace.path("side.db")
    with sqlite3.connect(sqlite_path) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
        rows = ((number, f"order {number} " * 4) for number in range(scale * 40_000))
        connection.executemany("INSERT INTO orders VALUES (?, ?)", rows)
    connection.close()
    files = workspace.folder("side-files")
    for number in range(scale * 4):
        (files / f"blob-{number}.bin").write_bytes(os.urandom(1 << 20))
    return [
        {"name": "orders-db", "type": "postgresql", "url": bench.server.url(database.name)},
        {"name": "ledger-db", "type": "mysql", "url": f"mysql://root@127.0.0.1:3306/{schema}"},
        {"name": "sessions", "type": "sqlite", "path": str(sqlite_path)},
        {"name": "uploads", "type": "files", "paths": [str(files)]},
    ]


def restore(cli: DrkitCli, plan: Path, snapshot: str, label: str, workers: int) -> float:
    workspace = cli.workspace
    pg_target = workspace.database_name(f"side_pg_{label}")
    my_target = workspace.database_name(f"side_my_{label}")
    argv = [*cli.program, "--quiet", "--catalog", cli.catalog, "restore", str(plan)]
    argv += ["--snapshot", snapshot, "--yes", "--json", "--parallel", str(workers)]
    argv += ["--to", f"orders-db={pg_target}", "--to", f"ledger-db={my_target}"]
    argv += ["--to", f"sessions={workspace.path(label, 'side.db')}"]
    argv += ["--to", f"uploads={workspace.path(label, 'files')}"]
    try:
        sample = run_timed(workspace, argv, env=cli.environment, capture=True)
        document = json.loads(sample.stdout)
        if document["outcome"] != "ok":
            raise RuntimeError(f"restore --parallel {workers}: {document}")
    finally:
        PostgresServer().drop_database(pg_target)
        mysql(f"DROP DATABASE IF EXISTS `{my_target}`")
    return sample.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.side_by_side", description=__doc__)
    parser.add_argument("--scale", type=int, default=6, help="pgbench scale (6)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    arguments = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    raise_on_sigterm()
    workspace = Workspace(PostgresServer())
    schema = workspace.database_name("side_my")
    try:
        bench = Bench(workspace, workspace.server)
        sources = build_sources(bench, arguments.scale)
        plan = write_plan(
            workspace.path("side.yaml"),
            name="side-by-side",
            database_url="",
            key_path=bench.key,
            stores=[filesystem_store("fs-1", workspace.path("store"), "r1")],
            sources=sources,
        )
        snapshot = str(bench.cli.backup(plan).document["snapshot_id"])
        times: dict[int, list[float]] = {1: [], 2: []}
        for number in range(arguments.rounds):
            for workers in rotated([1, 2], number):
                bench.checkpoint()
                label = f"r{number}w{workers}"
                times[workers].append(restore(bench.cli, plan, snapshot, label, workers))
                log.info("round %d, --parallel %d: %.2f s", number + 1, workers, times[workers][-1])
    finally:
        mysql(f"DROP DATABASE IF EXISTS `{schema}`")
        workspace.close()
    one, two = (statistics.median(times[workers]) for workers in (1, 2))
    print("| restore of 4 sources | median | min-max |\n| --- | --- | --- |")
    for workers, median in ((1, one), (2, two)):
        spread = f"{min(times[workers]):.2f}-{max(times[workers]):.2f}"
        print(f"| `--parallel {workers}` | {median:.2f} s | {spread} s |")
    print(f"\n--parallel 2 / --parallel 1: {two / one:.2f}x ({time.strftime('%H:%M')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
