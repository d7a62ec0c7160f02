"""MariaDB binlog archiving: RPO under a steady write load, written to bench/PITR-MARIADB.md.

A throwaway mariadbd (``--log-bin``, ROW format) on a free port, two local filesystem stores,
``drkit archive`` with the default ``ship_partial_every: 2s`` and a dump; then N seconds of
autocommit single-row inserts at a steady rate from two connections. Every half second the
recoverable window of each store is read from the catalog the way ``drkit status`` reads it,
and RPO = now - window end. Prints p50 / p99 / max per store as JSON.

    python -m bench.binlog [--seconds 120] [--rate 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymysql
import yaml

from bench.pitr import REPOSITORY, drkit, free_port, percentile


def start_server(root: Path, port: int) -> subprocess.Popen[bytes]:
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={root / 'data'}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *as_root,
        ],
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [
            "mariadbd",
            "--no-defaults",
            f"--datadir={root / 'data'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={root / 'sock'}",
            f"--pid-file={root / 'pid'}",
            f"--log-error={root / 'server.log'}",
            "--log-bin=mariadb-bin",
            "--server-id=1",
            "--binlog-format=ROW",
            *as_root,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            pymysql.connect(host="127.0.0.1", port=port, user="root").close()
            return server
        except pymysql.MySQLError:
            time.sleep(0.2)
    raise RuntimeError("mariadbd did not start")


def write_steadily(port: int, rate: float, stop: threading.Event) -> None:
    """Single-row autocommit inserts at ``rate`` per second (half on each of 2 threads)."""

    def writer(offset: int) -> None:
        connection = pymysql.connect(
            host="127.0.0.1", port=port, user="root", database="bench", autocommit=True
        )
        number, interval = offset, 2.0 / rate
        next_at = time.monotonic()
        with connection.cursor() as cursor:
            while not stop.is_set():
                cursor.execute("INSERT INTO orders VALUES (%s, 'steady')", (number,))
                number += 2
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
        connection.close()

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def measure_rpo(plan: Any, catalog_url: str, port: int, seconds: int, rate: float) -> Any:
    from drkit.archive.ledger import binlog_store_windows
    from drkit.catalog import Catalog

    stop = threading.Event()
    load = threading.Thread(target=write_steadily, args=(port, rate, stop))
    load.start()
    samples: dict[str, list[float]] = {}
    deadline = time.monotonic() + seconds
    with Catalog.open(catalog_url) as catalog:
        time.sleep(3)
        while time.monotonic() < deadline:
            now = datetime.now(UTC)
            for window in binlog_store_windows(catalog, plan, plan.sources[0]):
                if window.end is not None:
                    samples.setdefault(window.store, []).append((now - window.end).total_seconds())
            time.sleep(0.5)
    stop.set()
    load.join()
    return {
        store: {
            "samples": len(values),
            "p50": round(percentile(values, 0.5), 3),
            "p99": round(percentile(values, 0.99), 3),
            "max": round(max(values), 3),
        }
        for store, values in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--rate", type=float, default=100.0, help="inserts per second")
    options = parser.parse_args()
    sys.path.insert(0, str(REPOSITORY))
    from drkit.crypto import generate_keyfile
    from drkit.plan.loader import load_plan

    root = Path(tempfile.mkdtemp(prefix="drkit-bench-binlog-", dir="/tmp"))
    os.environ["DRKIT_HOME"] = str(root / "home")
    port = free_port()
    server = start_server(root, port)
    archiver: subprocess.Popen[bytes] | None = None
    try:
        with (
            pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True) as db,
            db.cursor() as cursor,
        ):
            cursor.execute("CREATE DATABASE bench")
            cursor.execute("CREATE TABLE bench.orders (id int PRIMARY KEY, note text)")
        generate_keyfile(root / "key")
        document = {
            "version": 1,
            "name": "bench-binlog",
            "sources": [
                {
                    "name": "db",
                    "type": "mysql",
                    "url": f"mysql://root@127.0.0.1:{port}/bench",
                    "pitr": {},
                }
            ],
            "keys": [{"name": "k", "type": "keyfile", "path": str(root / "key")}],
            "stores": [
                {"name": s, "type": "filesystem", "path": str(root / s), "region": s}
                for s in ("east", "west")
            ],
        }
        plan_file = root / "plan.yaml"
        plan_file.write_text(yaml.safe_dump(document))
        catalog = f"sqlite:///{root / 'catalog.db'}"
        archiver = subprocess.Popen(
            [sys.executable, "-m", "drkit", "--catalog", catalog, "archive", str(plan_file)],
            env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)
        drkit(catalog, "backup", str(plan_file))
        rpo = measure_rpo(load_plan(plan_file), catalog, port, options.seconds, options.rate)
        print(json.dumps({"seconds": options.seconds, "rate": options.rate, "rpo": rpo}, indent=2))
    finally:
        if archiver is not None:
            archiver.terminate()
            archiver.wait(60)
        server.terminate()
        server.wait(60)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
