"""SQLite write-ahead log capture: RPO under a steady write load, what the capture costs the
application's commits, and restore time, written to bench/PITR-SQLITE.md.

A WAL-mode SQLite database, two local filesystem stores, ``drkit archive`` with the default
``ship_partial_every: 2s``; single-row autocommit inserts at a steady rate. Every half second
the recoverable window of each store is read from the catalog the way ``drkit status`` reads
it, and RPO = now - window end. The writer times every commit; the same load runs without the
archiver first and after it stops (interleaved in that order), so the capture's cost on
commit latency is a ratio measured in the same run. Then ``drkit restore --latest`` is timed
against a plain file copy of the database.

    python -m bench.sqlite_capture [--seconds 60] [--rate 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.pitr import REPOSITORY, drkit, percentile


def write_steadily(path: Path, rate: float, stop: threading.Event, latencies: list[float]) -> None:
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    interval, next_at = 1.0 / rate, time.monotonic()
    while not stop.is_set():
        started = time.perf_counter()
        connection.execute("INSERT INTO orders (note) VALUES (?)", ("steady " * 20,))
        latencies.append(time.perf_counter() - started)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    connection.close()


def load_for(path: Path, rate: float, seconds: float) -> list[float]:
    """Commit latencies of ``seconds`` of the steady load."""
    latencies: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(target=write_steadily, args=(path, rate, stop, latencies))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return latencies


def summary(values: list[float], scale: float = 1.0) -> dict[str, float]:
    return {
        "samples": len(values),
        "p50": round(percentile(values, 0.5) * scale, 3),
        "p99": round(percentile(values, 0.99) * scale, 3),
        "max": round(max(values) * scale, 3),
    }


def measure_rpo(plan: Any, catalog_url: str, database: Path, seconds: int, rate: float) -> Any:
    from drkit.archive.ledger import sqlite_store_windows
    from drkit.catalog import Catalog

    latencies: list[float] = []
    stop = threading.Event()
    load = threading.Thread(target=write_steadily, args=(database, rate, stop, latencies))
    load.start()
    samples: dict[str, list[float]] = {}
    deadline = time.monotonic() + seconds
    with Catalog.open(catalog_url) as catalog:
        time.sleep(3)
        while time.monotonic() < deadline:
            now = datetime.now(UTC)
            for window in sqlite_store_windows(catalog, plan, plan.sources[0]):
                if window.end is not None:
                    samples.setdefault(window.store, []).append((now - window.end).total_seconds())
            time.sleep(0.5)
    stop.set()
    load.join()
    return {store: summary(values) for store, values in samples.items()}, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rate", type=float, default=100.0, help="inserts per second")
    options = parser.parse_args()
    sys.path.insert(0, str(REPOSITORY))
    from drkit.crypto import generate_keyfile
    from drkit.plan.loader import load_plan

    root = Path(tempfile.mkdtemp(prefix="drkit-bench-sqlite-", dir="/tmp"))
    os.environ["DRKIT_HOME"] = str(root / "home")
    database = root / "app" / "orders.db"
    database.parent.mkdir()
    with sqlite3.connect(database, isolation_level=None) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
    archiver: subprocess.Popen[bytes] | None = None
    try:
        generate_keyfile(root / "key")
        document = {
            "version": 1,
            "name": "bench-sqlite",
            "sources": [{"name": "db", "type": "sqlite", "path": str(database), "pitr": {}}],
            "keys": [{"name": "k", "type": "keyfile", "path": str(root / "key")}],
            "stores": [
                {"name": s, "type": "filesystem", "path": str(root / s), "region": s}
                for s in ("east", "west")
            ],
        }
        plan_file = root / "plan.yaml"
        plan_file.write_text(yaml.safe_dump(document))
        catalog = f"sqlite:///{root / 'catalog.db'}"
        plain_before = load_for(database, options.rate, options.seconds / 2)
        archiver = subprocess.Popen(
            [sys.executable, "-m", "drkit", "--catalog", catalog, "archive", str(plan_file)],
            env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)
        rpo, captured = measure_rpo(
            load_plan(plan_file), catalog, database, options.seconds, options.rate
        )
        archiver.terminate()
        archiver.wait(60)
        archiver = None
        with sqlite3.connect(database) as connection:
            rows_at_stop = connection.execute("SELECT count(*) FROM orders").fetchone()[0]
        plain_after = load_for(database, options.rate, options.seconds / 2)
        plain = plain_before + plain_after
        size = database.stat().st_size
        copy_started = time.perf_counter()
        shutil.copy(database, root / "copy.db")
        copy_seconds = time.perf_counter() - copy_started
        restored = root / "restored.db"
        restore_started = time.perf_counter()
        result = drkit(
            catalog, "restore", str(plan_file), "--latest", "--to", f"db={restored}", "--json"
        )
        restore_seconds = time.perf_counter() - restore_started
        outcome = json.loads(result.stdout) if result.returncode == 0 else {"error": result.stderr}
        with sqlite3.connect(restored) as connection:
            rows_restored = connection.execute("SELECT count(*) FROM orders").fetchone()[0]
        figures = {
            "seconds": options.seconds,
            "rate": options.rate,
            "rpo": rpo,
            "commit_ms": {
                "without_archiver": summary(plain, 1000),
                "with_archiver": summary(captured, 1000),
                "p50_ratio": round(percentile(captured, 0.5) / percentile(plain, 0.5), 2),
                "p99_ratio": round(percentile(captured, 0.99) / percentile(plain, 0.99), 2),
            },
            "restore": {
                "database_bytes": size,
                "drkit_restore_latest_seconds": round(restore_seconds, 3),
                "plain_copy_seconds": round(copy_seconds, 4),
                "rows_when_the_archiver_stopped": rows_at_stop,
                "rows_restored": rows_restored,
                "segments": len(outcome.get("segments", [])),
                "transactions_replayed": outcome.get("transactions_replayed"),
                "phases": outcome.get("phases"),
            },
        }
        print(json.dumps(figures, indent=2))
    finally:
        if archiver is not None:
            archiver.terminate()
            archiver.wait(60)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
